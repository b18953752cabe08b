"""Hydra recipe end to end: config checks, train (random:ar) -> final/ -> export -> bench rows."""
from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest



def test_variant_defaults(recipe_cfg):
    import dataclasses
    c = recipe_cfg("hydra")
    assert (c.variant, c.resolved_loss(), c.resolved_dropout()) == ("hydra++", "distill", 0.0)
    assert dataclasses.replace(c, dropout=None).resolved_dropout() == 0.2  # unset: the paper's
    c = recipe_cfg("hydra", "variant=hydra")
    assert (c.resolved_loss(), c.resolved_dropout()) == ("ce", 0.0)
    assert recipe_cfg("hydra", "variant=hydra", "loss=distill", "dropout=0.1").resolved_dropout() == 0.1


def test_listed_in_recipes():
    from accel.recipes import PLANNED, get
    assert get("hydra").group == "train" and "hydra" not in PLANNED


def test_export_rejects_unfinished_run_and_bad_format(tmp_path, check_export_refusals):
    from accel.recipes.hydra.export import export
    check_export_refusals(export, tmp_path, "no finished heads", "vllm", "only the accel format")


def test_train_export_bench(tmp_path, recipe_cfg):
    """A few steps on a random-init base; the exported checkpoint benches greedy vs hydra identically."""
    from accel.decoding.bench import run_bench
    from accel.decoding.checkpoint import load_checkpoint
    from accel.recipes.hydra.export import export
    from accel.recipes.hydra.train import run
    cfg = recipe_cfg("hydra", "backbone=random:ar", "max_steps=3", "save_steps=3", "n_per_task=4", "tasks=[copy,sort]",
                     "eval_n=2", "gen_len=12", "per_device_train_batch_size=4", "tree_nodes=6", "num_heads=3")
    run_dir = run(cfg)
    meta = json.loads((run_dir / "final" / "hydra.json").read_text())
    assert meta["num_heads"] == 3 and meta["prefix_layer"] and len(meta["stats"]["topk_accuracy"]) == 3
    rec = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*rec)
    assert {"est_accept_chain", "head1_top1", "head3_top4", "eval_est_accept_tree"} <= logged
    assert len((run_dir / "self_distill.jsonl").read_text().splitlines()) == 8
    ck = load_checkpoint(export(run_dir, tmp_path / "ck", tree_nodes=5))
    assert ck.accel["backbone"] == "." and 1 <= len(ck.accel["hydra"]["tree"]) <= 5
    from accel.recipes.targets import load_target
    rep = run_bench(load_target(str(ck.path)), tasks=["copy"], limit=3, gen_len=12, batch_size=3)
    rows = {r["method"]: r for r in rep["rows"] if r["task"] == "all"}
    assert list(rows) == ["greedy", "hydra", "hydra+lookup"]
    for m in ("hydra", "hydra+lookup"):
        assert rows[m]["accuracy"] == rows["greedy"]["accuracy"]
        assert rows[m]["tokens"] == rows["greedy"]["tokens"]
        assert rows[m]["nfe"] <= rows["greedy"]["nfe"]


def test_held_out_split(recipe_cfg):
    from accel.recipes.hydra.train import split_held_out
    pairs = [([1, i], [2]) for i in range(5)]
    c = recipe_cfg("hydra", "data=x.jsonl", "eval_n=2")
    assert split_held_out(c, None, pairs) == (pairs[:3], pairs[3:])
    assert split_held_out(recipe_cfg("hydra", "data=x.jsonl", "eval_n=9"), None, pairs) == (pairs, [])
    assert split_held_out(recipe_cfg("hydra", "eval_n=0"), None, pairs) == (pairs, [])


def test_export_references_builtin_base(tmp_path, recipe_cfg):
    """A run on builtin:ar exports heads only (backbone reference), and its tree drives the bench methods."""
    from accel.models.weights import builtin_dir
    if not (builtin_dir("ar") / "model.safetensors").exists():
        pytest.skip("built-in AR teacher not in this checkout")
    from accel.recipes.targets import load_target
    from accel.models.backbone import load_backbone
    from accel.recipes.hydra.export import export
    from accel.recipes.hydra.train import build_heads, save_final
    cfg = recipe_cfg("hydra", "num_heads=2", "num_layers=1", "variant=hydra")
    heads = build_heads(cfg, load_backbone("builtin:ar"))
    stats = {"topk_accuracy": [[0.9, 0.05, 0.0, 0.0], [0.5, 0.2, 0.1, 0.0]]}
    save_final(heads, cfg, tmp_path / "run" / "final", stats)
    ck = export(tmp_path / "run", tmp_path / "ck", tree_nodes=3)
    sec = json.loads((ck / "config.json").read_text())["accel"]
    assert sec["backbone"] == "builtin:ar" and sec["weights"] == ["heads.safetensors"]
    assert sec["hydra"]["tree"] == [[0], [0, 0], [0, 1]] and not sec["hydra"]["prefix_layer"]
    assert not (ck / "model.safetensors").exists()
    tgt = load_target(str(ck), device="cpu")
    assert tgt.default_methods == ["greedy", "hydra", "hydra+lookup"] and "hydra-typical" in tgt.recipe_methods
    prompt = [tgt.adapter.tokenizer("copy 1 2", add_special_tokens=False)["input_ids"]]
    g, h = tgt.recipe_methods["greedy"](tgt.adapter, prompt, 8), tgt.recipe_methods["hydra"](tgt.adapter, prompt, 8)
    assert g.tokens == h.tokens
