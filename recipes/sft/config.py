"""Config of `accel train sft` (no torch imports: --help and key checks stay instant)."""
from __future__ import annotations

from dataclasses import dataclass

from accel.trainers.config import LoraConfig, ModelConfig, SuiteDataConfig, ThreadsConfig, TrainConfig, _f, defaults


@dataclass
@defaults(learning_rate=3e-4, max_steps=100, save_steps=25)
class Config(ModelConfig, SuiteDataConfig, LoraConfig, ThreadsConfig, TrainConfig):
    output_dir: str = _f("runs/sft", "Run directory: checkpoints, metrics.jsonl, resolved config.")
    resp_len: int = _f(32, "dLLM: response window in tokens (response + end-token padding, truncated).")
    min_mask_ratio: float = _f(0.02, "dLLM: lower bound of the per-row mask ratio t ~ U(min, 1).")
    eval_n: int = _f(0, "Held-out examples per task scored at save points (0 = no eval; data=builtin only).")

    def validate(self) -> None:
        super().validate()
        self.at_least(1, "resp_len")
        if not 0 < self.min_mask_ratio <= 1:
            self.reject("min_mask_ratio", "must be in (0, 1]")
        if self.lora_r < 0:
            self.reject("lora_r", "must be >= 0 (0 = full fine-tuning)")
