"""Config of `accel train medusa` (no torch imports: --help and key checks stay instant)."""
from __future__ import annotations

from dataclasses import dataclass

from accel.recipes.shared.draft_config import DraftTreeConfig, DraftVocabConfig
from accel.trainers.config import (ALL_LINEAR, LoraConfig, ModelConfig, SuiteDataConfig, ThreadsConfig, TrainConfig,
                                  _f, defaults)


@dataclass
@defaults(warmup_ratio=0.1, max_steps=1200, per_device_train_batch_size=32, save_steps=400,
           lora_r=16, lora_target_modules=ALL_LINEAR, n_per_task=1024,
           backbone=_f("builtin:ar", "AR base model: builtin:ar, a local HF causal-LM dir, or random:ar (smoke tests)."),
           data=_f("builtin", "builtin (suite train split), a .jsonl of {prompt, response} (e.g. from `accel data "
                              "self-distill`), or a ShareGPT .json/.jsonl (loss on assistant turns)."))
class Config(ModelConfig, SuiteDataConfig, DraftTreeConfig, DraftVocabConfig, LoraConfig, ThreadsConfig, TrainConfig):
    DATA_FILES = (".jsonl", ".json")
    DATA_FIX = "use builtin, a .jsonl of {prompt, response}, or a ShareGPT .json/.jsonl"
    output_dir: str = _f("runs/medusa", "Run directory: checkpoints, metrics.jsonl, resolved config, final/.")
    mode: str = _f("medusa2", "medusa1: frozen base, heads only; medusa2: base jointly with LoRA (merged at "
                              "export; on the built-in AR teacher 2.5 tokens/forward vs 1.85 for medusa1).",
                   choices=("medusa1", "medusa2"))
    num_heads: int = _f(5, "K draft heads; head k predicts token t+k+1 from h_t.")
    num_layers: int = _f(2, "Residual blocks x + SiLU(Wx + b) per head.")
    head_decay: float = _f(0.8, "Head k's loss weight is head_decay**k (k = 0 for the first head).")
    loss: str = _f("kl", "kl: self-distillation, KL to the frozen base's softmax (heads and, in medusa2, the "
                         "LM term: the base keeps its outputs); ce: CE to the data's next tokens.",
                   choices=("ce", "kl"))
    learning_rate: float = _f(1e-3, "Peak learning rate (medusa2: the LoRA rate; heads get head_lr_mult x).")
    head_lr_mult: float = _f(4.0, "medusa2: heads' LR multiplier over the LoRA learning rate.")
    lambda_heads: float = _f(0.3, "medusa2: weight of the heads' loss next to the LM loss (paper: 0.2, 0.01 for "
                                  "self-distillation on 7B models; built-in teacher: 0.3 keeps greedy accuracy "
                                  "0.993 vs 0.997 at 2.5 tokens/forward, 1.0 costs 2 points).")
    lambda_warmup_steps: int = _f(100, "medusa2: steps over which the heads' weight ramps linearly from 0.")
    # topk, tree_nodes: DraftTreeConfig (shared with Hydra and EAGLE-3)
    eval_n: int = _f(32, "Held-out suite examples per task for head accuracy and the tree (data=builtin); "
                         "other data: the last 5% of examples.")
    states: str = _f("", "medusa1: train on cached base hidden states instead of running the base: a directory "
                         "from `accel data self-distill --states DIR`, or auto (computed once from `data` into "
                         "RUN/states). Batches are then positions, not sequences; needs loss=ce on self-distilled "
                         "data.")
    # draft_vocab_size, draft_vocab_extra: DraftVocabConfig (shared with Hydra)
    eval_positions: int = _f(20000, "With states: held-out positions measured at save points and at the end (0 = all).")

    def validate(self) -> None:
        super().validate()
        self.at_least(1, "num_heads", "num_layers")
        if self.num_layers > 8:
            self.reject("num_layers", "must be <= 8 (residual blocks per head)")
        if not 0 < self.head_decay <= 1:
            self.reject("head_decay", "must be in (0, 1]")
        if self.head_lr_mult <= 0:
            self.reject("head_lr_mult", "must be > 0")
        if self.lambda_heads < 0 or self.lambda_warmup_steps < 0:
            self.reject("lambda_heads" if self.lambda_heads < 0 else "lambda_warmup_steps", "must be >= 0")
        if self.mode == "medusa2" and self.lora_r < 1:
            self.reject("lora_r", "medusa2 trains the base with LoRA: use lora_r >= 1")
        if self.eval_n < 1:
            self.reject("eval_n", "must be >= 1 (the tree is built from measured head accuracy)")
        if self.states:
            if self.mode != "medusa1":
                self.reject("states", "cached states are for a frozen base: set mode=medusa1")
            if self.loss != "ce":
                self.reject("states", "training on cached states has no base logits: set loss=ce (on "
                                      "self-distilled data CE to the data is distillation of the base's greedy tokens)")
        if self.draft_vocab_size < 0 or (self.draft_vocab_size and not self.states):
            self.reject("draft_vocab_size", "must be >= 0, and > 0 only together with states=DIR|auto")
