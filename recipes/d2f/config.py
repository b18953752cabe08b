"""Config of `accel distill d2f` (no torch imports: --help and key checks stay instant).

Field names of the data section match dParallel's, so the trajectory step is shared
(`accel.recipes.dparallel.train.ensure_trajectories`).
"""
from __future__ import annotations

from dataclasses import dataclass

from accel.trainers.config import (ALL_LINEAR, LoraConfig, ModelConfig, ThreadsConfig, TrainConfig, TrajectoryDataConfig,
                                  _f, defaults)


@dataclass
@defaults(max_steps=300, per_device_train_batch_size=32, warmup_ratio=0.05, save_steps=100,
           lora_r=32, lora_alpha=32.0, lora_dropout=0.1, lora_target_modules=ALL_LINEAR,
           backbone=_f("builtin:dllm", "The dLLM to distill (teacher = same weights, adapter off): builtin:dllm, a "
                                       "local HF dir, or random:dllm (a tiny random-init model, for smoke tests)."))
class Config(ModelConfig, TrajectoryDataConfig, LoraConfig, ThreadsConfig, TrainConfig):
    output_dir: str = _f("runs/d2f", "Run directory: checkpoints, metrics.jsonl, final/ (merged model), d2f.json.")
    learning_rate: float = _f(1e-3, "Peak learning rate (paper, 7B/8B LoRA: 1e-5).")
    weight_decay: float = _f(0.05, "AdamW weight decay (paper: 0.05).")
    adam_beta1: float = _f(0.9, "AdamW beta1 (paper: 0.9).")
    adam_beta2: float = _f(0.95, "AdamW beta2 (paper: 0.95).")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (paper: 1.0).")
    # -- data (the trajectory fields come from TrajectoryDataConfig, shared with dParallel)
    gen_len: int = _f(64, "Trajectory length in tokens (built-in answers are <= 20 tokens; paper data: up to 512).")
    block_len: int = _f(8, "D2F block length: noising blocks, block-causal attention and decoding (paper: 16; "
                           "the built-in answers are 4-20 tokens, where 8 feeds a third fewer tokens per forward "
                           "than 16 at equal or better accuracy; the LLaDA/Dream configs set 16).")
    # -- noising
    min_ratio: float = _f(0.2, "Lower bound of the first block's mask ratio p0 ~ U(min_ratio, max_ratio).")
    max_ratio: float = _f(0.7, "Upper bound of p0 and cap of every block's ratio (ratios rise monotonically to it).")
    # -- decoding recorded at export / used by eval (presets: accel.recipes.d2f.decode.PRESETS)
    tau_add: float = _f(0.1, "Add a new block when the last block's decoded fraction >= tau_add (paper: 0.1).")
    tau_act: float = _f(0.95, "A block is fully activated when its predecessor's decoded fraction >= tau_act.")
    tau_conf: float = _f(0.9, "Decode tokens with confidence > tau_conf in every active block.")
    eval_n: int = _f(0, "Held-out prompts per task decoded with D2F at save points (0 = no eval; builtin only).")

    def validate(self) -> None:
        super().validate()
        if self.block_len < 1 or self.gen_len < 1 or self.gen_len % self.block_len:
            self.reject("gen_len", f"must be a positive multiple of block_len ({self.block_len})")
        if not 0 < self.min_ratio <= self.max_ratio <= 1:
            self.reject("min_ratio", f"need 0 < min_ratio <= max_ratio ({self.max_ratio}) <= 1")
        if self.lora_r < 1:
            self.reject("lora_r", "D2F needs LoRA (>= 1): the teacher is the same weights with the adapter disabled")
        if not 0 <= self.lora_dropout < 1:
            self.reject("lora_dropout", "must be in [0, 1)")
        for key in ("tau_add", "tau_act"):
            if not 0 <= getattr(self, key) <= 1:
                self.reject(key, "must be a decoded fraction in [0, 1]")
        if not 0 <= self.tau_conf <= 1:
            self.reject("tau_conf", "must be a probability in [0, 1]")
        if not 0 <= self.adam_beta1 < 1 or not 0 <= self.adam_beta2 < 1:
            self.reject("adam_beta2", "AdamW betas must be in [0, 1)")
