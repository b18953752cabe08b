"""Config of `accel train sft` (no torch imports: --help and key checks stay instant)."""
from __future__ import annotations

from dataclasses import dataclass

from accel.trainers.config import LoraConfig, TrainConfig, _f, defaults


@dataclass
@defaults(learning_rate=3e-4, max_steps=100, save_steps=25)
class Config(LoraConfig, TrainConfig):
    output_dir: str = _f("runs/sft", "Run directory: checkpoints, metrics.jsonl, resolved config.")
    backbone: str = _f("builtin:dllm", "builtin:dllm, builtin:ar, a local HF dir, or random:dllm / random:ar "
                                       "(a tiny random-init model, for smoke tests).")
    trust_remote_code: bool = _f(False, "Allow model code shipped with the checkpoint (LLaDA/Dream).")
    data: str = _f("builtin", "builtin (the synthetic task suite) or a .jsonl of {prompt, response} lines.")
    tasks: list[str] = _f([], "Suite tasks to train on (empty = all); only with data=builtin.")
    n_per_task: int = _f(256, "Training examples per suite task (data=builtin).")
    resp_len: int = _f(32, "dLLM: response window in tokens (response + end-token padding, truncated).")
    min_mask_ratio: float = _f(0.02, "dLLM: lower bound of the per-row mask ratio t ~ U(min, 1).")
    eval_n: int = _f(0, "Held-out examples per task scored at save points (0 = no eval; data=builtin only).")
    threads: int = _f(0, "torch CPU threads per process (0 = leave torch's default).")

    def validate(self) -> None:
        super().validate()
        self.at_least(1, "resp_len", "n_per_task")
        if not 0 < self.min_mask_ratio <= 1:
            self.reject("min_mask_ratio", "must be in (0, 1]")
        if self.lora_r < 0:
            self.reject("lora_r", "must be >= 0 (0 = full fine-tuning)")
        if self.data != "builtin" and not self.data.endswith(".jsonl"):
            self.reject("data", "use builtin or a path ending in .jsonl")
