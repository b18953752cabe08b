"""Config of `accel train hydra` (no torch imports: --help and key checks stay instant)."""
from __future__ import annotations

from dataclasses import dataclass

from accel.recipes.shared.draft_config import DraftTreeConfig, DraftVocabConfig, SelfDistillDataConfig
from accel.trainers.config import ModelConfig, ThreadsConfig, TrainConfig, _f, defaults

VARIANTS = ("hydra", "hydra++")


@dataclass
@defaults(warmup_ratio=0.05, max_steps=4800, per_device_train_batch_size=32, save_steps=1200,
           backbone=_f("builtin:ar", "The AR model the heads draft for (frozen): builtin:ar, a local HF dir, or "
                                     "random:ar (a tiny random-init model, for smoke tests)."))
class Config(ModelConfig, SelfDistillDataConfig, DraftTreeConfig, DraftVocabConfig, ThreadsConfig, TrainConfig):
    output_dir: str = _f("runs/hydra", "Run directory: checkpoints, metrics.jsonl, final/ (heads + head stats).")
    variant: str = _f("hydra++", "hydra: sequential heads, CE on the data tokens; hydra++: + a prefix decoder "
                                 "layer over the base hidden states, teacher-distillation loss, dropout.",
                      choices=VARIANTS)
    num_heads: int = _f(6, "Draft heads K (head k predicts token t+k+1 from h_t and tokens t+1..t+k).")
    num_layers: int = _f(2, "Residual MLP layers per head (paper: 4 for Hydra++; 2 suits the 128-wide built-in).")
    dropout: float | None = _f(0.0, "Dropout in the heads; unset = the paper's (0.2 for hydra++, 0 for hydra). 0 "
                                    "by default: the ~1M-parameter heads on the built-in teacher underfit with 0.2 "
                                    "(2.47 vs 2.79 tokens/forward at 5 vs 6 heads, 1,200 vs 2,400 steps).")
    loss: str = _f("auto", "auto (ce for hydra, distill for hydra++), ce (true next tokens) or distill "
                           "(CE against the base model's softmax).", choices=("auto", "ce", "distill"))
    learning_rate: float = _f(1e-3, "Peak learning rate (paper, Hydra++ on Vicuna-7B: 5e-4).")
    weight_decay: float = _f(0.0, "AdamW weight decay (paper, Hydra++: 0.1).")
    # -- data: SelfDistillDataConfig (shared with EAGLE-3)
    # -- estimates (topk, tree_nodes: DraftTreeConfig, shared with Medusa and EAGLE-3)
    eval_n: int = _f(32, "Held-out examples (per task for data=builtin; the jsonl's last eval_n otherwise) whose "
                         "per-head top-k accuracy is measured at save points and at the end (saved to final/, "
                         "builds the tree at export; 0 = none: the tree is the top-1 chain).")
    states: str = _f("", "Train on cached base hidden states: a directory from `accel data self-distill --states "
                         "DIR` (the base never runs during training; data must be the matching self-distilled "
                         "jsonl or is ignored). Loss is then CE to the base's own greedy tokens.")
    # draft_vocab_size, draft_vocab_extra: DraftVocabConfig (shared with Medusa)
    eval_seqs: int = _f(64, "With states: held-out sequences (the cache's last ones) measured at save points.")

    def resolved_dropout(self) -> float:
        return (0.2 if self.variant == "hydra++" else 0.0) if self.dropout is None else self.dropout

    def resolved_loss(self) -> str:
        return ("distill" if self.variant == "hydra++" else "ce") if self.loss == "auto" else self.loss

    def validate(self) -> None:
        super().validate()
        if self.variant not in VARIANTS:
            self.reject("variant", f"choose one of {', '.join(VARIANTS)}")
        self.at_least(1, "num_heads")
        if self.num_layers < 1:
            self.reject("num_layers", "must be >= 1 (the first layer reads the concatenated head input)")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            self.reject("dropout", "must be in [0, 1) (or unset for the variant default)")
        if self.draft_vocab_size < 0 or (self.draft_vocab_size and not self.states):
            self.reject("draft_vocab_size", "must be >= 0, and > 0 only together with states=DIR")
        self.at_least(0, "eval_n")
