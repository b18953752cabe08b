"""Recipe configs: typed dataclasses whose fields carry a one-line help (shown by --help).

Every recipe's `Config` subclasses `TrainConfig`. Field names follow transformers'
`TrainingArguments` where they overlap. Declare fields as
``name: type = field(default=..., metadata={"help": "one line"})``.
Loading (defaults < YAML < key=value overrides, validation with suggestions) lives here too.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A bad config key or value; the message names the key and the fix."""


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    output_dir: str = _f("runs/run", "Run directory: checkpoints, metrics.jsonl, resolved config.")
    seed: int = _f(0, "Random seed (data order, init, masking).")
    learning_rate: float = _f(1e-4, "Peak learning rate.")
    max_steps: int = _f(200, "Optimizer steps to train for (overrides num_train_epochs when > 0).")
    num_train_epochs: float = _f(1.0, "Epochs over the training data when max_steps <= 0.")
    per_device_train_batch_size: int = _f(8, "Examples per device per micro-batch.")
    gradient_accumulation_steps: int = _f(1, "Micro-batches accumulated per optimizer step.")
    warmup_ratio: float = _f(0.0, "Fraction of steps with linear LR warm-up.")
    lr_scheduler_type: str = _f("cosine", "LR schedule: constant, linear or cosine.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 disables).")
    bf16: bool = _f(False, "Train in bfloat16 mixed precision.")
    logging_steps: int = _f(1, "Write metrics.jsonl every N steps.")
    save_steps: int = _f(50, "Checkpoint every N steps (plus a final one).")
    save_total_limit: int = _f(2, "Keep at most this many periodic checkpoints.")
    resume: str = _f("auto", "auto (newest complete checkpoint in output_dir), never, or a checkpoint path.")
    deepspeed: str = _f("", "DeepSpeed config: zero2, zero3, zero2-offload, a JSON path, or empty for none.")
    report_to: str = _f("none", "none or wandb (offline unless WANDB_MODE/API key configured).")
    dataloader_num_workers: int = _f(0, "DataLoader worker processes.")
