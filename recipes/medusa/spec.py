"""What a Medusa checkpoint (accel format) carries: the heads' shapes, the training mode, the tuned
candidate tree (or tree_nodes 0: size it on the decoding device) with the measured head accuracies,
and the decode defaults.

Written by `export.py` through `save_checkpoint(..., spec=)`, read by `inference.py` with
`ckpt.spec(Spec)`; the config.json keys are the field names, under "decode" and/or "medusa".
The vllm/medusa formats are other projects' layouts and carry no spec.
"""
from __future__ import annotations

from dataclasses import dataclass

from accel.decoding.spec import SpecError, TreeDraftSpec, spec_field


@dataclass(frozen=True, kw_only=True)
class Spec(TreeDraftSpec):
    SECTION = "medusa"

    method: str = spec_field("medusa", where=("decode",), help="decode default row")
    gen_len: int | None = spec_field(None, where=("decode",), settable=True, omit_none=True,
                                     help="decode default generation length (None: the bench's default)")
    num_heads: int = spec_field(help="draft heads (tokens proposed per step)")
    num_layers: int = spec_field(help="residual layers per head")
    hidden_size: int = spec_field(help="the base model's hidden size the heads read")
    vocab_size: int = spec_field(help="the base model's vocabulary")
    mode: str = spec_field(help="medusa-1 (frozen base) or medusa-2 (LoRA)")
    loss: str = spec_field(help="training loss")
    tree: list = spec_field(help="the candidate tree as paths of head top-k indices")
    head_accuracy: list = spec_field(help="held-out per-head top-k accuracy (builds/sizes the tree)")
    chain_accept_len: float | None = spec_field(None, help="estimated accepted length of the top-1 chain")
    tree_accept_len: float | None = spec_field(None, help="estimated accepted length of the tree")
    draft_vocab_size: int | None = spec_field(None, omit_none=True, help="reduced draft vocabulary (0: the full one)")
    draft_vocab_coverage: float | None = spec_field(None, omit_none=True, help="token mass the draft vocabulary covers")
    tree_nodes: int | None = spec_field(None, settable=True, omit_none=True,
                                        help="candidate-tree node budget (0: size it on the decoding device)")
    heads_file: str | None = spec_field(None, omit_none=True,
                                        help="the heads' weight file when the checkpoint's own model is the base")

    def validate(self) -> None:
        if self.tree_nodes is not None and self.tree_nodes < 0:
            raise SpecError(f"--tree-nodes {self.tree_nodes}: use >= 1 for a fixed tree or 0 to size it on the device")
        super().validate()
