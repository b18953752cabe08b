"""The cost curve and the draft shape chosen from it (issue 28): synthetic curves, no timed assertions."""
from __future__ import annotations

import pytest
import torch

from accel.decoding import cost_curve as cc
from accel.decoding.tree_build import chain_accept_length

CPU = [1.00, 1.13, 1.16, 1.40, 1.52, 1.70, 1.80, 1.94] + [1.94 + 0.03 * i for i in range(1, 60)]
"""SmolLM2-135M at 2 threads (issue 28's table, in units of a one-token step), extended roughly linearly."""
GPU = [1.0] * 40 + [1.0 + 0.02 * i for i in range(1, 30)]
"""A GPU: a forward costs about the same up to dozens of tokens."""
ACC = [[0.45, 0.12, 0.06, 0.04], [0.40, 0.10, 0.05, 0.03], [0.45, 0.10, 0.05, 0.03], [0.48, 0.10, 0.05, 0.03]]
"""Held-out per-depth top-k accuracy of a small SmolLM2 draft."""


def test_cpu_curve_picks_a_short_chain():
    tree, table = cc.choose_shape(ACC, CPU)
    assert tree.num_nodes == tree.max_depth <= 2  # a chain of one or two drafts
    best = max(r["expected_speedup"] for r in table)
    row = next(r for r in table if r["tree"] is tree)
    assert row["expected_speedup"] == best
    # chain-1: 1.45 tokens per step at 1.13 greedy steps
    c1 = next(r for r in table if r["shape"] == "chain-1")
    assert c1["expected_tokens_per_step"] == pytest.approx(1.45)
    assert c1["expected_speedup"] == pytest.approx(1.45 / 1.13)
    # every tree is expected slower than the best chain on this curve
    assert all(r["expected_speedup"] < best for r in table if r["shape"].startswith("tree"))


def test_gpu_curve_picks_a_wide_tree():
    tree, table = cc.choose_shape(ACC, GPU)
    assert tree.num_nodes >= 32 and tree.num_nodes > tree.max_depth
    row = next(r for r in table if r["tree"] is tree)
    assert row["expected_speedup"] == pytest.approx(row["expected_tokens_per_step"])  # flat curve: speedup = tokens


def test_draft_cost_shortens_the_chain():
    top1 = [0.6, 0.6, 0.6, 0.6]
    free, _ = cc.choose_chain(top1, GPU)
    assert free == 4
    dear, sp = cc.choose_chain(top1, GPU, draft_cost=lambda depth, nodes: 0.5 * depth)
    assert dear < free
    assert sp == pytest.approx(chain_accept_length(top1[:dear]) / (1 + 0.5 * dear))


def test_expected_speedup_and_extrapolation():
    tree = cc.TreeSpec.chain(2)
    e = chain_accept_length([ACC[0][0], ACC[1][0]])
    assert cc.expected_speedup(ACC, tree, CPU) == pytest.approx(e / CPU[2])
    short = [1.0, 1.5]
    assert cc.cost_at(short, 4) == pytest.approx(2.5)  # linear past the measured end


@pytest.fixture
def tiny_ar(tiny_model):
    return tiny_model("ar")


def test_cost_curve_is_cached_per_fingerprint(tmp_path, monkeypatch, tiny_ar):
    monkeypatch.setenv("ACCEL_CACHE_DIR", str(tmp_path))
    calls = []

    def fake(model, max_k, **kw):
        calls.append(max_k)
        return [1.0 + 0.1 * k for k in range(max_k)]
    a = cc.cost_curve(tiny_ar, 4, measure=fake)
    b = cc.cost_curve(tiny_ar, 3, measure=fake)  # a prefix of what is stored: only probed (k <= 3), not measured
    assert calls == [4, 3] and b == a[:3]
    cc.cost_curve(tiny_ar, 6, measure=fake)  # longer than stored: measured
    assert calls == [4, 3, 6]
    files = list((tmp_path / "cost_curves").glob("*.json"))
    assert len(files) == 1
    assert cc.fingerprint(tiny_ar)["threads"] == torch.get_num_threads()


def test_stale_cost_curve_is_measured_again(tmp_path, monkeypatch, tiny_ar):
    """A curve stored while the machine was loaded (its one-token forward 3x today's probe) is not reused."""
    monkeypatch.setenv("ACCEL_CACHE_DIR", str(tmp_path))
    scale = {"now": 3.0}

    def fake(model, max_k, **kw):
        return [scale["now"] * (1.0 + 0.5 * k) for k in range(max_k)]
    loaded = cc.cost_curve(tiny_ar, 4, measure=fake)
    scale["now"] = 1.0  # the other job ended
    idle = cc.cost_curve(tiny_ar, 4, measure=fake)
    assert loaded[0] == 3.0 and idle == [1.0, 1.5, 2.0, 2.5]
    scale["now"] = 1.1  # within STALE of the stored curve: kept
    assert cc.cost_curve(tiny_ar, 4, measure=fake) == idle


def test_cost_curve_of_another_shape_is_measured_again(tmp_path, monkeypatch, tiny_ar):
    """A curve stored under load whose one-token forward is only 20% slow but whose 3-token forward costs 1.6
    one-token forwards where the idle machine measures 1.2 is measured again (the shape is what shapes chains)."""
    monkeypatch.setenv("ACCEL_CACHE_DIR", str(tmp_path))
    now = {"curve": [1.2, 1.5, 1.92, 2.4]}

    def fake(model, max_k, **kw):
        return now["curve"][:max_k]
    cc.cost_curve(tiny_ar, 4, measure=fake)
    now["curve"] = [1.0, 1.1, 1.2, 1.9]
    assert cc.cost_curve(tiny_ar, 4, measure=fake) == [1.0, 1.1, 1.2, 1.9]
    now["curve"] = [1.05, 1.2, 1.3, 9.9]  # the same shape within STALE_SHAPE at k <= 3: kept
    assert cc.cost_curve(tiny_ar, 4, measure=fake) == [1.0, 1.1, 1.2, 1.9]


def test_measured_curve_shape(tiny_ar):
    costs = cc.measure_forward_costs(tiny_ar, 4, prefix=8, repeats=1)
    assert len(costs) == 4 and all(c > 0 for c in costs)
    assert costs == sorted(costs)  # made non-decreasing


def test_monotone_pools_an_outlier():
    assert cc.monotone([1.0, 1.1, 3.0, 1.2, 1.3, 1.4]) == pytest.approx([1.0, 1.1, 1.725, 1.725, 1.725, 1.725])
    assert cc.monotone([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
