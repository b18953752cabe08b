"""`accel export RUN --out DIR` for Hydra: heads + prefix layer + tree + base reference.

The checkpoint is the accel format (`accel.decoding.checkpoint`): ``heads.safetensors`` (the
heads and, for Hydra++, the prefix layer) and a config.json whose ``"accel"`` section names
the base model (``builtin:ar`` or an absolute model directory) and holds the `Spec`
(recipes/hydra/spec.py): head shapes, variant, the candidate tree (built from the run's held-out per-head
top-k accuracy for a node budget) and its estimated accepted length. A run on a random-init
base (``random:ar``, smoke tests) cannot reference its base, so the base model itself is
written into the checkpoint (backbone ``"."``) beside the heads.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from accel.decoding.checkpoint import CheckpointError, check_options, override_spec
from accel.recipes.hydra.spec import Spec
from accel.recipes.hydra.train import HEADS_FILE, META_FILE
from accel.recipes.shared.draft_export import choose_tree, read_final, save_draft_checkpoint

FORMATS = ("accel",)


def export(run_dir, out_dir, format: str = "accel", **overrides) -> Path:
    """Writes the inference checkpoint; tree_nodes / gen_len (the spec's settable fields) override the
    run's defaults."""
    check_options(Spec, overrides, "hydra")
    if format not in FORMATS:
        raise CheckpointError(f"--format {format}: Hydra exports only the accel format (vLLM and the Medusa "
                              "repo load Medusa heads, not Hydra's sequential heads)")
    meta, heads = read_final(run_dir, HEADS_FILE, META_FILE, "hydra", "heads")
    acc = (meta.get("stats") or {}).get("topk_accuracy")
    spec = Spec(**{k: meta[k] for k in ("num_heads", "num_layers", "hidden_size", "vocab_size", "prefix_layer",
                                        "variant", "loss", "dropout", "seed", "draft_vocab_size")},
                draft_vocab_coverage=meta.get("draft_vocab_coverage"), tree_nodes=meta.get("tree_nodes"), tree=[],
                heads_file=HEADS_FILE, topk_accuracy=acc)
    spec = override_spec(spec, overrides, "hydra")
    tree, est = choose_tree(meta, spec.tree_nodes, int(meta["num_heads"]))
    # tree_nodes is recorded only as 0 (size the tree on the decoding device), which needs the accuracies
    spec = dataclasses.replace(spec, tree=tree, est_accept_tree=est,
                               tree_nodes=0 if spec.tree_nodes == 0 and acc else None)
    return save_draft_checkpoint(out_dir, "hydra", meta, heads, HEADS_FILE, spec)
