"""Config of `accel train eagle3` (no torch imports: --help and key checks stay instant)."""
from __future__ import annotations

from dataclasses import dataclass

from accel.trainers.config import ConfigError, TrainConfig, _f


@dataclass
class Config(TrainConfig):
    output_dir: str = _f("runs/eagle3", "Run directory: checkpoints, metrics.jsonl, final/ (draft + statistics).")
    backbone: str = _f("builtin:ar", "The AR target the draft proposes for (frozen): builtin:ar, a local HF "
                                     "causal-LM dir, or random:ar (tiny random-init, for smoke tests).")
    trust_remote_code: bool = _f(False, "Allow model code shipped with the checkpoint.")
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
    warmup_ratio: float = _f(0.05, "Fraction of steps with linear LR warm-up.")
    max_steps: int = _f(1000, "Optimizer steps to train for (1,000 x 32 sequences: ~15 min for the built-in "
                              "teacher on a contended CPU core).")
    per_device_train_batch_size: int = _f(32, "Sequences per device per micro-batch.")
    save_steps: int = _f(250, "Checkpoint every N steps (plus a final one).")
    # -- data
    data: str = _f("builtin", "builtin (the synthetic task suite's prompts) or a .jsonl of {prompt, response}.")
    tasks: list[str] = _f([], "Suite tasks to train on (empty = all); only with data=builtin.")
    n_per_task: int = _f(2048, "Training prompts per suite task (data=builtin).")
    self_distill: bool = _f(True, "Replace the responses with the target's own greedy outputs (what greedy "
                                  "acceptance verifies against), cached in RUN/self_distill.jsonl.")
    gen_len: int = _f(64, "Max new tokens when self-distilling responses.")
    gen_batch_size: int = _f(64, "Prompts decoded together when self-distilling.")
    # -- estimates and the tree
    topk: int = _f(4, "k of the per-step top-k accuracy (logged; the static tree is built from top-1..k).")
    eval_n: int = _f(32, "Held-out examples (per task for data=builtin; the jsonl's last eval_n otherwise) whose "
                         "per-step top-k accuracy is measured at save points and at the end (builds the tree at "
                         "export; 0 = none: the tree is a top-1 chain of ttt_steps).")
    tree_depth: int = _f(0, "Depth of the held-out statistics and of the static tree (0 = ttt_steps); the draft "
                            "keeps running on its own outputs past its training unroll, less accurately.")
    tree_nodes: int = _f(48, "Node budget of the static candidate tree built at export (excluding the root).")
    threads: int = _f(0, "torch CPU threads per process (0 = leave torch's default).")

    def validate(self) -> None:
        super().validate()

        def bad(key, msg):
            raise ConfigError(f"{key}={getattr(self, key)!r}: {msg}")
        if self.ttt_steps < 1:
            bad("ttt_steps", "must be >= 1 (1 = no training-time test, plain next-next-token training)")
        if not 0 < self.step_decay <= 1:
            bad("step_decay", "must be in (0, 1]")
        if self.draft_vocab_size < 2:
            bad("draft_vocab_size", "must be >= 2")
        if self.feature_layers and (len(self.feature_layers) != 3 or min(self.feature_layers) < 0):
            bad("feature_layers", "give three non-negative layer indices (e.g. [2, 16, 29]) or [] for the default")
        if self.data != "builtin" and not self.data.endswith(".jsonl"):
            bad("data", "use builtin or a path ending in .jsonl")
        if self.tasks and self.data != "builtin":
            bad("tasks", "only applies to data=builtin")
        for key in ("n_per_task", "gen_len", "gen_batch_size", "topk", "tree_nodes"):
            if getattr(self, key) < 1:
                bad(key, "must be >= 1")
        if self.tree_depth < 0:
            bad("tree_depth", "must be >= 0 (0 = ttt_steps)")
        if self.eval_n < 0:
            bad("eval_n", "must be >= 0")
