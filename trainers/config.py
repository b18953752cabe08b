"""Recipe configs: typed dataclasses whose fields carry a one-line help (shown by --help).

Every recipe's `Config` subclasses `TrainConfig`. Field names follow transformers'
`TrainingArguments` where they overlap. Declare fields as
``name: type = field(default=..., metadata={"help": "one line"})``.
Loading (defaults < YAML < key=value overrides, validation with suggestions) is in
`accel.trainers.loading`. This module must not import torch: `accel train X --help` and a
typo'd key both have to answer in well under two seconds.
"""
from __future__ import annotations

from dataclasses import Field, dataclass, field
from typing import ClassVar

from accel.core.errors import UserError


class ConfigError(UserError, ValueError):
    """A bad config key or value; the message names the key and the fix."""


def _f(default, help: str, choices: tuple | None = None):
    """A field with a one-line help (and optional allowed values, checked at load time).

    list/dict defaults get a factory so instances never share them.
    """
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def defaults(**values):
    """Class decorator (placed under ``@dataclass``): new defaults for inherited fields, same help.

    A recipe changes how long or how wide it trains without restating what `max_steps` means::

        @dataclass
        @defaults(max_steps=300, save_steps=100)
        class Config(TrainConfig): ...

    A value made with `_f` also replaces the help, where the recipe says what the field is to it
    (``backbone=_f("builtin:ar", "The AR target ...")``); the type stays the inherited field's.
    """
    def apply(cls):
        ann = dict(cls.__dict__.get("__annotations__", {}))
        for key, value in values.items():
            base = next((b.__dataclass_fields__[key] for b in cls.__mro__[1:]
                         if key in getattr(b, "__dataclass_fields__", {})), None)
            if base is None:
                raise TypeError(f"{cls.__name__}: no inherited field {key!r} to give a default")
            ann.setdefault(key, base.type)
            if not isinstance(value, Field):
                value = _f(value, base.metadata.get("help", ""), base.metadata.get("choices"))
            setattr(cls, key, value)
        cls.__annotations__ = ann
        return cls
    return apply


def field_help(f) -> str:
    return f.metadata.get("help", "")


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
    lr_scheduler_type: str = _f("cosine", "LR schedule: constant, linear or cosine.",
                                choices=("constant", "linear", "cosine"))
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 disables).")
    bf16: bool = _f(False, "Train in bfloat16 mixed precision.")
    logging_steps: int = _f(1, "Write metrics.jsonl every N steps.")
    save_steps: int = _f(50, "Checkpoint every N steps (plus a final one).")
    save_total_limit: int = _f(2, "Keep at most this many periodic checkpoints.")
    resume: str = _f("auto", "auto (newest complete checkpoint in output_dir), never, or a checkpoint path.")
    deepspeed: str = _f("", "DeepSpeed config: zero2, zero3, zero2-offload, a JSON path, or empty for none.")
    report_to: str = _f("none", "none or wandb (offline unless WANDB_MODE/API key configured).",
                        choices=("none", "wandb"))
    dataloader_num_workers: int = _f(0, "DataLoader worker processes.")

    def validate(self) -> None:
        """Range checks that need no heavy imports; subclasses extend and call super().validate()."""
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            self.reject("max_steps", "set max_steps > 0 or num_train_epochs > 0")
        self.at_least(1, "per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps", "save_steps")
        if self.learning_rate <= 0:
            self.reject("learning_rate", "must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            self.reject("warmup_ratio", "must be in [0, 1)")
        if self.save_total_limit < 1:
            self.reject("save_total_limit", "must be >= 1 (the newest checkpoint is what resume needs)")
        self.at_least(0, "dataloader_num_workers")
        if self.deepspeed and self.deepspeed not in DEEPSPEED_PRESETS and not self.deepspeed.endswith(".json"):
            self.reject("deepspeed", f"use one of {', '.join(DEEPSPEED_PRESETS)}, a path to a DeepSpeed .json, or empty")
        if self.resume not in ("auto", "never") and not self.resume:
            self.reject("resume", "use auto, never or a checkpoint directory")

    def reject(self, key: str, msg: str):
        """Raise the one-line ConfigError every check gives: the key, its value, then what to do."""
        raise ConfigError(f"{key}={getattr(self, key)!r}: {msg}")

    def at_least(self, minimum: int, *keys: str) -> None:
        """`reject` the first of `keys` whose value is below `minimum` ("must be >= minimum")."""
        for key in keys:
            if getattr(self, key) < minimum:
                self.reject(key, f"must be >= {minimum}")


DEEPSPEED_PRESETS = ("zero2", "zero3", "zero2-offload")
"""Short names of the DeepSpeed JSONs shipped in accel/trainers/deepspeed/."""


ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
"""LoRA on every linear layer of a Llama-style block (attention and MLP), what the tiny backbones need."""


@dataclass
class LoraConfig:
    """The LoRA adapter fields of the recipes that train one (SFT, Medusa-2, dParallel, D2F); each sets
    its own defaults with `defaults` and says in `validate` when it needs LoRA (`accel.trainers.lora`)."""
    lora_r: int = _f(0, "LoRA rank (0 = full fine-tuning, where the recipe allows it).")
    lora_alpha: float = _f(16.0, "LoRA alpha.")
    lora_dropout: float = _f(0.0, "LoRA dropout.")
    lora_target_modules: list[str] = _f(["q_proj", "k_proj", "v_proj", "o_proj"], "Modules that get LoRA adapters.")


@dataclass
class ModelConfig:
    """The model every recipe loads (`accel.recipes.shared.models.load_model`); a recipe sets its default,
    and where it helps says what the model is to it, with `defaults`."""
    backbone: str = _f("builtin:dllm", "builtin:dllm, builtin:ar, a local HF dir, or random:dllm / random:ar "
                                       "(a tiny random-init model, for smoke tests).")
    trust_remote_code: bool = _f(False, "Allow model code shipped with the checkpoint to run (LLaDA/Dream need it).")


@dataclass
class ThreadsConfig:
    """torch's CPU thread count, for the recipes that set one (all but Learn2PD)."""
    threads: int = _f(0, "torch CPU threads per process (0 = leave torch's default).")

    def set_threads(self) -> None:
        """Apply `threads` where training starts (imports torch: not at config load)."""
        if self.threads > 0:
            import torch
            torch.set_num_threads(self.threads)


@dataclass
class SuiteDataConfig:
    """Training data from the built-in suite or a file (SFT, Medusa, the self-distilled drafts); a recipe
    that reads more file kinds sets DATA_FILES and DATA_FIX, the message that lists them."""
    DATA_FILES: ClassVar[tuple[str, ...]] = (".jsonl",)
    DATA_FIX: ClassVar[str] = "use builtin or a path ending in .jsonl"
    data: str = _f("builtin", "builtin (the synthetic task suite) or a .jsonl of {prompt, response} lines.")
    tasks: list[str] = _f([], "Suite tasks to train on (empty = all); only with data=builtin.")
    n_per_task: int = _f(256, "Training examples per suite task (data=builtin).")

    def validate(self) -> None:
        super().validate()  # the TrainConfig this section is mixed into
        self.at_least(1, "n_per_task")
        if self.data != "builtin" and not self.data.endswith(self.DATA_FILES):
            self.reject("data", self.DATA_FIX)


@dataclass
class TrajectoryDataConfig:
    """Fields of the teacher-trajectory step shared by the distillation recipes (dParallel, D2F)."""
    trajectories: str = _f("", "Trajectory dir from `accel data trajectories`; empty = RUN/trajectories, "
                               "generated with the settings below when missing.")
    prompts: str = _f("builtin", "Prompt source when generating trajectories: builtin, a .jsonl or an HF dataset dir.")
    tasks: list[str] = _f([], "Suite tasks to distill on (empty = all); only with prompts=builtin.")
    n_per_task: int = _f(64, "Training prompts per suite task (prompts=builtin).")
    traj_batch_size: int = _f(64, "Prompts decoded together when generating trajectories.")
    filter_correct: bool = _f(True, "Drop trajectories whose answer is wrong (where a checker exists).")

    def validate(self) -> None:
        super().validate()  # the TrainConfig this section is mixed into
        self.at_least(1, "n_per_task", "traj_batch_size")
        if self.tasks and self.prompts != "builtin":
            self.reject("tasks", "only applies to prompts=builtin")
