"""Exporting a draft trained on a frozen AR model (Hydra heads, an EAGLE-3 draft) to the accel format.

Both runs end in RUN/final/{weights, meta json} (`accel.recipes.shared.draft_training.write_final`);
both checkpoints hold the draft's weights, a tree built from the run's held-out accuracy and a
reference to the base, except a random-init test base that no directory holds: that one is
rebuilt from its seed and stored in the checkpoint (backbone ".").
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

from safetensors.torch import load_file, save

from accel.decoding.checkpoint import _unshare, save_checkpoint
from accel.decoding.tree_build import build_tree, expected_accept_length
from accel.recipes.shared.models import load_model
from accel.recipes.shared.run_export import read_run


def read_final(run_dir, weights_file: str, meta_file: str, recipe: str, what: str) -> tuple[dict, dict]:
    """(meta, tensors) of RUN/final, or a CheckpointError saying how to finish the run."""
    run, meta = read_run(run_dir, f"final/{weights_file}", f"final/{meta_file}", recipe, f"finished {what}")
    return meta, load_file(str(run / "final" / weights_file))


def choose_tree(meta: dict, tree_nodes: int | None, chain: int) -> tuple[list[list[int]], float | None]:
    """(tree paths, estimated accepted length) from the run's held-out top-k accuracy for `tree_nodes`
    (None: the run's; 0, sized when decoding: 48 for the estimate); without it (eval_n=0) a top-1
    chain of `chain` steps and no estimate."""
    acc = (meta.get("stats") or {}).get("topk_accuracy")
    if not acc:
        return [[0] * d for d in range(1, chain + 1)], None
    n = meta.get("tree_nodes") if tree_nodes is None else tree_nodes
    tree = build_tree(acc, int(n or 48))
    return tree.to_json(), expected_accept_length(acc, tree)


def save_draft_checkpoint(out_dir, recipe: str, meta: dict, tensors: dict, weights_file: str, spec) -> Path:
    """The checkpoint: `tensors` as `weights_file` beside a reference to the run's base (``builtin:…`` or
    an absolute model directory), or beside the rebuilt random-init base itself."""
    backbone = str(meta["backbone"])
    if backbone.startswith("random:"):
        return _with_random_base(out_dir, recipe, meta, tensors, weights_file, spec)
    if not backbone.startswith("builtin:"):
        backbone = str(Path(backbone).expanduser().resolve())
    return save_checkpoint(out_dir, {"recipe": recipe, "backbone": backbone}, tensors=tensors,
                           weights_name=weights_file, spec=spec)


def _with_random_base(out_dir, recipe: str, meta: dict, tensors: dict, weights_file: str, spec) -> Path:
    """The random-init base rebuilt from its seed and stored in the checkpoint (backbone ".")."""
    adapter = load_model(SimpleNamespace(backbone=meta["backbone"], seed=int(meta.get("seed", 0)),
                                         trust_remote_code=False))
    tok_files = {}
    with tempfile.TemporaryDirectory() as d:
        adapter.tokenizer.save_pretrained(d)
        for f in Path(d).iterdir():
            if f.is_file() and f.name != "config.json":
                tok_files[f.name] = f.read_bytes()
    return save_checkpoint(out_dir, {"recipe": recipe, "backbone": "."}, tensors=adapter.model.state_dict(),
                           extra_files={weights_file: save(_unshare(tensors)), **tok_files},
                           backbone_config=adapter.model.config.to_dict(), spec=spec)
