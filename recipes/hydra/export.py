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
import json
from pathlib import Path

from accel.decoding.checkpoint import CheckpointError, check_options, override_spec, save_checkpoint
from accel.recipes.hydra.spec import Spec
from accel.recipes.hydra.train import HEADS_FILE, META_FILE

FORMATS = ("accel",)


def choose_tree(meta: dict, tree_nodes: int | None = None) -> tuple[list[list[int]], float | None]:
    """(tree paths, estimated accepted length) from the run's held-out statistics.

    Without statistics (eval_n=0) the tree is the top-1 chain over all heads.
    """
    from accel.decoding.tree_build import build_tree, expected_accept_length
    stats = meta.get("stats") or {}
    acc = stats.get("topk_accuracy")
    if not acc:
        return [[0] * d for d in range(1, int(meta["num_heads"]) + 1)], None
    n = meta.get("tree_nodes") if tree_nodes is None else tree_nodes
    tree = build_tree(acc, int(n or 48))  # 0 (auto): sized when decoding; 48 for the estimate
    return tree.to_json(), expected_accept_length(acc, tree)


def export(run_dir, out_dir, format: str = "accel", **overrides) -> Path:
    """Writes the inference checkpoint; tree_nodes / gen_len (the spec's settable fields) override the
    run's defaults."""
    check_options(Spec, overrides, "hydra")
    if format not in FORMATS:
        raise CheckpointError(f"--format {format}: Hydra exports only the accel format (vLLM and the Medusa "
                              "repo load Medusa heads, not Hydra's sequential heads)")
    run = Path(run_dir).expanduser()
    final = run / "final"
    if not (final / HEADS_FILE).exists() or not (final / META_FILE).exists():
        raise CheckpointError(f"{run} has no finished heads (final/{HEADS_FILE}); finish the run with "
                              f"`accel train hydra --output {run}` (it resumes)")
    from safetensors.torch import load_file
    meta = json.loads((final / META_FILE).read_text())
    heads = load_file(str(final / HEADS_FILE))
    acc = (meta.get("stats") or {}).get("topk_accuracy")
    spec = Spec(**{k: meta[k] for k in ("num_heads", "num_layers", "hidden_size", "vocab_size", "prefix_layer",
                                        "variant", "loss", "dropout", "seed", "draft_vocab_size")},
                draft_vocab_coverage=meta.get("draft_vocab_coverage"), tree_nodes=meta.get("tree_nodes"), tree=[],
                heads_file=HEADS_FILE, topk_accuracy=acc)
    spec = override_spec(spec, overrides, "hydra")
    tree, est = choose_tree(meta, spec.tree_nodes)
    # tree_nodes is recorded only as 0 (size the tree on the decoding device), which needs the accuracies
    spec = dataclasses.replace(spec, tree=tree, est_accept_tree=est,
                               tree_nodes=0 if spec.tree_nodes == 0 and acc else None)
    backbone = str(meta["backbone"])
    if backbone.startswith("random:"):
        return _export_with_base(out_dir, meta, heads, spec)
    if not backbone.startswith("builtin:"):
        backbone = str(Path(backbone).expanduser().resolve())
    return save_checkpoint(out_dir, {"recipe": "hydra", "backbone": backbone}, tensors=heads, weights_name=HEADS_FILE,
                           spec=spec)


def _export_with_base(out_dir, meta, heads, spec) -> Path:
    """The random-init base rebuilt from its seed and stored in the checkpoint (backbone ".")."""
    from types import SimpleNamespace

    from safetensors.torch import save

    from accel.decoding.checkpoint import _unshare
    from accel.recipes.shared.models import load_model
    adapter = load_model(SimpleNamespace(backbone=meta["backbone"], seed=int(meta.get("seed", 0)),
                                         trust_remote_code=False))
    config = adapter.model.config.to_dict()
    tok_files = {}
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        adapter.tokenizer.save_pretrained(d)
        for f in Path(d).iterdir():
            if f.is_file() and f.name != "config.json":
                tok_files[f.name] = f.read_bytes()
    extra = {HEADS_FILE: save(_unshare(heads)), **tok_files}
    return save_checkpoint(out_dir, {"recipe": "hydra", "backbone": "."}, tensors=adapter.model.state_dict(),
                           extra_files=extra, backbone_config=config, spec=spec)
