"""What a Hydra checkpoint carries: the heads' shapes, the variant, the candidate tree (or 0: size it
on the decoding device) with the per-head accuracy it was built from, and the decode defaults.

Written by `export.py` through `save_checkpoint(..., spec=)`, read by `inference.py` with
`ckpt.spec(Spec)`; the config.json keys are the field names, under "decode" and/or "hydra".
"""
from __future__ import annotations

from dataclasses import dataclass

from accel.decoding.spec import SpecError, TreeDraftSpec, spec_field


@dataclass(frozen=True, kw_only=True)
class Spec(TreeDraftSpec):
    SECTION = "hydra"

    method: str = spec_field("hydra", where=("decode",), help="decode default row")
    num_heads: int = spec_field(help="draft heads (tokens proposed per step)")
    num_layers: int = spec_field(help="MLP layers per head")
    hidden_size: int = spec_field(help="the base model's hidden size the heads read")
    vocab_size: int = spec_field(help="the base model's vocabulary")
    prefix_layer: bool = spec_field(False, help="Hydra++: a prefix attention layer before the heads")
    variant: str = spec_field(help="hydra or hydra++")
    loss: str = spec_field(help="training loss (ce / distillation)")
    dropout: float = spec_field(help="training dropout")
    seed: int = spec_field(0, help="rebuilds a random:ar base as in training")
    draft_vocab_size: int = spec_field(0, help="reduced draft vocabulary (0: the full one)")
    draft_vocab_coverage: float | None = spec_field(None, omit_none=True, help="token mass the draft vocabulary covers")
    tree_nodes: int | None = spec_field(None, settable=True, omit_none=True,
                                        help="candidate-tree node budget (0: size it on the decoding device)")
    tree: list = spec_field(help="the candidate tree as paths of head top-k indices")
    est_accept_tree: float | None = spec_field(None, help="estimated accepted length of the tree")
    heads_file: str = spec_field("heads.safetensors", help="the weight file holding the heads")
    topk_accuracy: list | None = spec_field(None, help="held-out per-head top-k accuracy (sizes the tree)")

    def validate(self) -> None:
        if self.tree_nodes is not None and self.tree_nodes < 0:
            raise SpecError(f"tree_nodes={self.tree_nodes}: must be >= 1, or 0 to size the tree on the decoding device")
        super().validate()
