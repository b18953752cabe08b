"""Config of `accel train eagle3` (no torch imports: --help and key checks stay instant)."""
from __future__ import annotations

from dataclasses import dataclass

from accel.recipes.shared.draft_config import DraftTreeConfig, SelfDistillDataConfig
from accel.trainers.config import ModelConfig, ThreadsConfig, TrainConfig, _f, defaults


@dataclass
@defaults(warmup_ratio=0.05, save_steps=250,
           backbone=_f("builtin:ar", "The AR target the draft proposes for (frozen): builtin:ar, a local HF "
                                     "causal-LM dir, or random:ar (tiny random-init, for smoke tests)."),
           tree_nodes=_f(48, "Node budget of the static candidate tree built at export (excluding the root)."))
class Config(ModelConfig, SelfDistillDataConfig, DraftTreeConfig, ThreadsConfig, TrainConfig):
    output_dir: str = _f("runs/eagle3", "Run directory: checkpoints, metrics.jsonl, final/ (draft + statistics).")
    feature_layers: list[int] = _f([], "Target hidden states fused by the draft's fc (HF hidden_states indices = "
                                       "the input of that layer); empty = 2, L/2, L-3 (spread over 1..L-1 when "
                                       "those collide on a shallow target).")
    draft_vocab_size: int = _f(32000, "Draft vocabulary: the N most frequent target tokens of the training "
                                      "responses (EAGLE-3 uses 32K of Llama-3's 128K); capped at the target's vocab.")
    ttt_steps: int = _f(7, "Training-time-test unroll: steps the draft runs on its own outputs per position "
                           "(SpecForge: 7).")
    step_decay: float = _f(0.8, "Loss weight of unroll step k is step_decay**k.")
    learning_rate: float = _f(1e-3, "Peak learning rate (SpecForge on 8B targets: 1e-4; the 128-wide tiny "
                                    "draft trains faster at 1e-3).")
    max_steps: int = _f(1000, "Optimizer steps to train for (1,000 x 32 sequences: ~15 min for the built-in "
                              "teacher on a contended CPU core).")
    per_device_train_batch_size: int = _f(32, "Sequences per device per micro-batch.")
    # -- data: SelfDistillDataConfig (shared with Hydra)
    # -- estimates and the tree (topk, tree_nodes: DraftTreeConfig, shared with Medusa and Hydra)
    eval_n: int = _f(32, "Held-out examples (per task for data=builtin; the jsonl's last eval_n otherwise) whose "
                         "per-step top-k accuracy is measured at save points and at the end (builds the tree at "
                         "export; 0 = none: the tree is a top-1 chain of ttt_steps).")
    states: str = _f("", "Train on cached target states: a directory from `accel data self-distill --states DIR "
                         "--feature-layers A,B,C` with the layers this draft reads (the target never runs during "
                         "training; its sequences are the data, its last eval_n held out, and data / self_distill "
                         "are not read).")
    tree_depth: int = _f(0, "Depth of the held-out statistics and of the static tree (0 = ttt_steps); the draft "
                            "keeps running on its own outputs past its training unroll, less accurately.")

    def validate(self) -> None:
        super().validate()
        if self.ttt_steps < 1:
            self.reject("ttt_steps", "must be >= 1 (1 = no training-time test, plain next-next-token training)")
        if not 0 < self.step_decay <= 1:
            self.reject("step_decay", "must be in (0, 1]")
        self.at_least(2, "draft_vocab_size")
        if self.feature_layers and (len(self.feature_layers) != 3 or min(self.feature_layers) < 0):
            self.reject("feature_layers", "give three non-negative layer indices (e.g. [2, 16, 29]) or [] for the "
                                          "default")
        self.at_least(1, "tree_nodes")
        if self.tree_depth < 0:
            self.reject("tree_depth", "must be >= 0 (0 = ttt_steps)")
        self.at_least(0, "eval_n")
