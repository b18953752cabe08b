"""Config of `accel distill dparallel` (no torch imports: --help and key checks stay instant)."""
from __future__ import annotations

from dataclasses import dataclass

from accel.trainers.config import (ALL_LINEAR, LoraConfig, ModelConfig, ThreadsConfig, TrainConfig, TrajectoryDataConfig,
                                  _f, defaults)


@dataclass
@defaults(max_steps=120, per_device_train_batch_size=32, warmup_ratio=0.05, save_steps=50,
           lora_r=32, lora_alpha=32.0, lora_target_modules=ALL_LINEAR,
           backbone=_f("builtin:dllm", "The dLLM to distill (also the trajectory teacher): builtin:dllm, a local "
                                       "HF dir, or random:dllm (a tiny random-init model, for smoke tests)."))
class Config(ModelConfig, TrajectoryDataConfig, LoraConfig, ThreadsConfig, TrainConfig):
    output_dir: str = _f("runs/dparallel", "Run directory: checkpoints, metrics.jsonl, final/ (merged model).")
    learning_rate: float = _f(2e-4, "Peak learning rate (paper, LLaDA-8B LoRA: 2e-5; built-in teacher: 2e-4 kept 0.806 vs 0.778 at 1e-3).")
    # -- data
    gen_len: int = _f(64, "Trajectory length in tokens (paper: 256; built-in answers are <= 20 tokens).")
    block_len: int = _f(32, "Semi-AR block length (trajectories, loss blocks and decoding).")
    canvas_lens: list[int] = _f([64, 256], "Response canvas lengths drawn per step (multiples of block_len, >= "
                                           "gen_len): the tail past the trajectory is all [MASK], no loss, so the "
                                           "student sees the canvas it will decode (gen 256); [] = gen_len only.")
    # -- loss
    mask_prob: float = _f(0.5, "Probability of masking each position of the chosen block (the complementary "
                               "mask covers the rest).")
    entropy_weight: float | None = _f(None, "lambda of the certainty-forcing entropy term; unset = 2 (LLaDA-like, "
                                            "built-in) or 1 (Dream family).")
    entropy_temperature: float = _f(0.5, "Temperature T of softmax(logits / T) in the entropy term.")
    # -- decoding recorded at export / used by eval
    threshold: float = _f(0.2, "Entropy threshold of the decode rule, in nats (paper: 0.45-0.5 on LLaDA-8B; the "
                               "built-in teacher at gen 256: 0.5 loses 2 arith prompts of 8, 0.2 none).")
    eval_n: int = _f(0, "Held-out prompts per task decoded at save points (0 = no eval; prompts=builtin only).")

    def validate(self) -> None:
        super().validate()
        if self.block_len < 1 or self.gen_len < 1 or self.gen_len % self.block_len:
            self.reject("gen_len", f"must be a positive multiple of block_len ({self.block_len})")
        if not 0 < self.mask_prob < 1:
            self.reject("mask_prob", "must be in (0, 1)")
        if self.entropy_weight is not None and self.entropy_weight < 0:
            self.reject("entropy_weight", "must be >= 0 (or unset for the family default)")
        if self.entropy_temperature <= 0:
            self.reject("entropy_temperature", "must be > 0")
        if self.lora_r < 0:
            self.reject("lora_r", "must be >= 0 (0 = full fine-tuning)")
        if self.threshold <= 0:
            self.reject("threshold", "must be > 0 (entropy in nats; paper: 0.45-0.5)")
        for c in self.canvas_lens:
            if c < self.gen_len or c % self.block_len:
                self.reject("canvas_lens", f"each must be a multiple of block_len ({self.block_len}) and >= "
                                           f"gen_len ({self.gen_len})")
