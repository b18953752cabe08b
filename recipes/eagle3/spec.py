"""What an EAGLE-3 checkpoint (accel format) carries: the draft's shape, the target layers it reads,
the unroll depth, the candidate tree with the accuracies it was built from, and the decode defaults.

Written by `export.py` through `save_checkpoint(..., spec=)`, read by `inference.py` with
`ckpt.spec(Spec)`; the config.json keys are the field names, under "decode" and/or "eagle3".
The speculators format is vLLM/SGLang's layout and carries no spec.
"""
from __future__ import annotations

from dataclasses import dataclass

from accel.decoding.spec import SpecError, TreeDraftSpec, spec_field


@dataclass(frozen=True, kw_only=True)
class Spec(TreeDraftSpec):
    SECTION = "eagle3"

    method: str = spec_field("eagle3", where=("decode",), help="decode default row")
    hidden_size: int = spec_field(help="the target's hidden size")
    vocab_size: int = spec_field(help="the target's vocabulary")
    draft_vocab_size: int = spec_field(help="the draft's output vocabulary (d2t maps it to the target's)")
    feature_layers: list = spec_field(help="the three target layers whose hidden states the draft reads")
    ttt_steps: int = spec_field(7, help="training-time-test unroll depth (the chain row's length)")
    step_decay: float = spec_field(help="per-step loss weight used in training")
    seed: int = spec_field(0, help="rebuilds a random:ar target as in training")
    tree_nodes: int | None = spec_field(None, where=(), settable=True,
                                        help="export option: node budget of the tree (not stored; the tree is)")
    tree: list = spec_field(help="the candidate tree as paths of top-k indices")
    est_accept_tree: float | None = spec_field(None, help="estimated accepted length of the tree")
    draft_file: str = spec_field("draft.safetensors", help="the weight file holding the draft")
    topk_accuracy: list | None = spec_field(None, help="held-out per-step top-k accuracy")

    def validate(self) -> None:
        if self.tree_nodes is not None and self.tree_nodes < 1:
            raise SpecError(f"tree_nodes={self.tree_nodes}: must be >= 1")
        super().validate()
