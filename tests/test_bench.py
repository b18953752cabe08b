"""The bench harness and the method table, on tiny random-init models saved to a temp dir."""
from __future__ import annotations

import json
import math
import types

import pytest
import torch

import accel.recipes as recipes
from accel.cli.options import parse_options
from accel.data.prompts import encode_prompt
from accel.decoding import dllm, report as reporting, target as tg
from accel.decoding.bench import run_bench
from accel.decoding.checkpoint import save_checkpoint
from accel.decoding.errors import BenchError
from accel.decoding.methods import MethodError, available, get_method
from accel.decoding.runs import method_help
from accel.decoding.timing import count_tokens
from accel.recipes.targets import load_target

HAS_THRESHOLD = hasattr(dllm, "generate_threshold")


@pytest.fixture(scope="module")
def models(tiny_dir):
    return {kind: tiny_dir(kind) for kind in ("dllm", "ar")}


@pytest.fixture(scope="module")
def report(models):
    return run_bench(models["dllm"], ["vanilla"], ["copy", "arith"], limit=2, gen_len=32, batch_size=2,
                     compare=[models["ar"]])


def test_report_schema(report, models):
    assert report["target"] == models["dllm"] and report["compare"] == [models["ar"]]
    assert report["gen_len"] == 32 and report["limit"] == 2 and report["tasks"] == ["copy", "arith"]
    assert {"torch", "transformers", "python", "accel"} <= set(report["versions"])
    assert report["device"].startswith("cpu")
    assert [m["name"] for m in report["methods"]] == ["vanilla", "greedy"]
    assert [m["kind"] for m in report["methods"]] == ["dllm", "ar"]
    json.loads(json.dumps(report))  # JSON-serialisable as is
    keys = {"method", "task", "accuracy", "nfe", "tokens_per_forward", "tokens_per_s", "speedup"}
    assert len(report["rows"]) == 2 * 3
    for r in report["rows"]:
        assert keys <= set(r)
        assert 0.0 <= r["accuracy"] <= 1.0 and r["tokens_per_s"] > 0


def test_numbers_are_consistent(report):
    rows = {(r["method"], r["task"]): r for r in report["rows"]}
    for task in ("copy", "arith", "all"):
        assert rows[("vanilla", task)]["speedup"] == 1.0  # the first method is the baseline
        v, g = rows[("vanilla", task)], rows[("greedy", task)]
        assert g["speedup"] == pytest.approx(g["tokens_per_s"] / v["tokens_per_s"])
        assert v["nfe"] == 32  # LLaDA baseline: one token per forward, gen_len forwards
        assert 1 <= g["nfe"] <= 32
        for r in (v, g):
            assert r["tokens_per_forward"] == pytest.approx(r["tokens"] / (r["nfe"] * r["n"]))
    for m in ("vanilla", "greedy"):
        per = [rows[(m, t)] for t in ("copy", "arith")]
        a = rows[(m, "all")]
        assert a["n"] == 4 and a["tokens"] == sum(r["tokens"] for r in per)
        assert a["accuracy"] == pytest.approx(sum(r["accuracy"] * r["n"] for r in per) / 4)
        assert a["seconds"] == pytest.approx(sum(r["seconds"] for r in per))


def test_plot_and_json(report, tmp_path):
    reporting.write_json(report, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["rows"] == report["rows"]
    reporting.plot_report(report, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    overall, per_task = reporting.report_tables(report)
    assert overall.row_count == 2 and per_task.row_count == 2


def test_count_tokens():
    assert count_tokens([5, 6, 1, 1, 1], eos_ids=(1,)) == 3
    assert count_tokens([5, 6, 7], eos_ids=(1,)) == 3
    assert count_tokens([1, 5], eos_ids=(1,)) == 1


def test_method_table():
    assert available("ar") == ["greedy", "sample"]
    assert set(available("dllm")) == {"vanilla", "fast-dllm", "fast-dllm-prefix", "fast-dllm-dual",
                                      "fast-dllm-factor", "entropy-threshold"}
    m = get_method("entropy-threshold", "dllm", {"threshold": "0.4", "cache": "dual", "block_len": "16"})
    assert m.options["threshold"] == 0.4 and m.options["cache"] == "dual" and m.block_len == 16
    assert m.options["rule"] == "entropy" and m.kind == "dllm" and m.help
    assert get_method("fast-dllm-factor", "dllm").options["factor"] == 1.0
    assert get_method("fast-dllm-prefix", "dllm", {"cache": "none"}).options["cache"] is None
    assert get_method("sample", "ar").options["temperature"] == 0.7
    with pytest.raises(MethodError, match="unknown method 'nope' for a dllm model; choose from: vanilla"):
        get_method("nope", "dllm")
    with pytest.raises(MethodError, match="'greedy' is a method for ar models"):
        get_method("greedy", "dllm")
    with pytest.raises(MethodError, match="has no option 'thresh'"):
        get_method("fast-dllm", "dllm", {"thresh": "0.5"})
    with pytest.raises(MethodError, match="must be a number"):
        get_method("fast-dllm", "dllm", {"threshold": "high"})
    with pytest.raises(MethodError, match="choose prefix, dual or none"):
        get_method("fast-dllm", "dllm", {"cache": "full"})
    with pytest.raises(MethodError, match="not key=value"):
        parse_options(["threshold"])


def test_select_methods_and_gen_len():
    t = tg.Target(spec="x", adapter=types.SimpleNamespace(kind="dllm"), default_methods=["vanilla", "fast-dllm"])
    chosen = tg.select_methods(t, None, {"threshold": "0.7"}, block_len=16)
    assert list(chosen) == ["vanilla", "fast-dllm"]
    assert chosen["fast-dllm"].options["threshold"] == 0.7 and "threshold" not in chosen["vanilla"].options
    assert chosen["vanilla"].block_len == 16 == chosen["fast-dllm"].block_len
    with pytest.raises(MethodError, match="no selected method has this option"):
        tg.select_methods(t, ["vanilla"], {"threshold": "0.7"})
    msg = r"unknown method 'greedy' for x \('greedy' is a method for ar models\); choose from: vanilla"
    with pytest.raises(MethodError, match=msg):
        tg.select_methods(t, ["greedy"])
    tg.check_gen_len(48, chosen)
    with pytest.raises(BenchError, match="gen_len 50 is not a multiple of the block length 16"):
        tg.check_gen_len(50, chosen)


def test_sample_is_seeded(models):
    from accel.models.backbone import load_backbone
    a = load_backbone(models["ar"])
    prompts = [encode_prompt(a.tokenizer, "copy 123")]
    runs = [get_method("sample", "ar", {"seed": "3"})(a, prompts, 8).tokens for _ in range(2)]
    assert runs[0] == runs[1]


def test_default_gen_len(models):
    from accel.models.backbone import load_backbone
    a = load_backbone(models["ar"])
    assert tg.default_gen_len(a) == 64
    a.tokenizer = types.SimpleNamespace(get_vocab=lambda: {"a": 0}, __len__=None)
    assert tg.default_gen_len(a) == 256


@pytest.mark.skipif(not HAS_THRESHOLD, reason="generate_threshold is not in decoding/dllm.py yet")
def test_default_dllm_methods(models):
    # A random model may predict [MASK] itself, which a threshold sampler never finishes with;
    # this adapter rules that token out (trained models do not predict it).
    from accel.models.backbone import Adapter, load_backbone

    class NoMaskOutput(Adapter):
        def dllm_logits(self, *args, **kwargs):
            logits, out = super().dllm_logits(*args, **kwargs)
            logits[..., self.mask_id] = -1e9
            return logits, out

    a = load_backbone(models["dllm"])
    t = tg.Target(spec="tiny", adapter=NoMaskOutput(**vars(a)), default_methods=bench_defaults("dllm"))
    r = run_bench(t, None, ["copy"], limit=2, gen_len=32, batch_size=2)
    names = [m["name"] for m in r["methods"]]
    assert names == ["vanilla", "fast-dllm", "fast-dllm-prefix", "fast-dllm-dual", "entropy-threshold"]
    for row in r["rows"]:
        assert 1 <= row["nfe"] <= 32 and row["tokens_per_s"] > 0


def bench_defaults(kind):
    from accel.decoding.methods import DEFAULT_METHODS
    return list(DEFAULT_METHODS[kind])


def _fake_recipe(monkeypatch, calls):
    """Registers recipe 'fake' whose checkpoints offer 'fake-fast' (vanilla at block 16)."""
    from accel.decoding.methods import DecodeMethod
    from accel.recipes.recipe import Recipe
    from accel.trainers.config import TrainConfig

    def bench_methods(ckpt, adapter):
        scale = float(ckpt.tensors()["scale"][0])
        base = get_method("vanilla", "dllm", {"block_len": 16})

        def fake_fast(a, prompts, gen_len):
            calls.append((scale, len(prompts), gen_len))
            return base(a, prompts, gen_len)
        return {"fake-fast": DecodeMethod("fake-fast", "dllm", "vanilla in blocks of 16, for the test", fake_fast,
                                          block=16)}

    monkeypatch.setattr(recipes, "RECIPES", recipes.RECIPES + (
        Recipe("fake", "train", "a test recipe", TrainConfig, train=lambda cfg: None, bench_methods=bench_methods,
               default_methods=("vanilla", "fake-fast"), methods={"fake-fast": "vanilla in blocks of 16"}),))


def test_checkpoint_target_uses_the_recipe(models, tmp_path, monkeypatch):
    calls = []
    _fake_recipe(monkeypatch, calls)
    ck = save_checkpoint(tmp_path / "ck", {"recipe": "fake", "backbone": models["dllm"]},
                         {"scale": torch.tensor([2.5])})
    r = run_bench(load_target(str(ck)), None, ["copy"], limit=2, gen_len=32, batch_size=2)
    assert [m["name"] for m in r["methods"]] == ["vanilla", "fake-fast"]
    assert r["methods"][1]["help"] == "vanilla in blocks of 16, for the test"
    assert calls and all(c[0] == 2.5 and c[2] == 32 for c in calls)
    assert sum(c[1] for c in calls) == 2 + 2  # warm-up (2 prompts) + the timed batch
    rows = {(x["method"], x["task"]): x for x in r["rows"]}
    assert rows[("fake-fast", "all")]["nfe"] == 32 and rows[("vanilla", "all")]["speedup"] == 1.0


@pytest.mark.parametrize("recipe, match", [("someday", "not built in this version"),
                                           ("nonsense", "unknown to this accel"),
                                           ("learn2pd-ghost", "no decode methods")])
def test_checkpoint_recipe_errors(models, tmp_path, monkeypatch, recipe, match):
    from accel.recipes.recipe import Recipe
    from accel.trainers.config import TrainConfig
    monkeypatch.setattr(recipes, "RECIPES", recipes.RECIPES + (
        Recipe("learn2pd-ghost", "train", "", TrainConfig, train=lambda cfg: None),))
    monkeypatch.setattr(recipes, "PLANNED", {"someday": "train"})
    ck = save_checkpoint(tmp_path / "ck", {"recipe": recipe, "backbone": models["dllm"]})
    with pytest.raises(BenchError, match=match):
        load_target(str(ck))


def test_bad_inputs_fail_before_decoding(models, tmp_path):
    with pytest.raises(BenchError, match="limit must be >= 1"):
        run_bench(models["dllm"], limit=0)
    from accel.data.tasks import UnknownTaskError
    with pytest.raises(UnknownTaskError):
        run_bench(models["dllm"], tasks=["nope"])
    with pytest.raises(BenchError, match="not a multiple of the block length 32"):
        run_bench(models["dllm"], ["vanilla"], ["copy"], gen_len=40)
    with pytest.raises(BenchError, match="is a directory"):
        reporting.check_output_path(tmp_path, "--json")
    with pytest.raises(BenchError, match="does not exist"):
        reporting.check_output_path(tmp_path / "no" / "r.json", "--json")


def test_compare_names_stay_unique(models, tiny_dir):
    other = tiny_dir("ar", 1)  # another AR model: its greedy is another decode
    r = run_bench(models["ar"], ["greedy", "sample"], ["copy"], limit=1, gen_len=8, compare=[other])
    assert [m["name"] for m in r["methods"]] == ["greedy", "sample", f"{other}/greedy"]
    assert r["methods"][2]["target"] == other
    # the same backbone again (e.g. two checkpoints of one base): its greedy row would repeat the first
    r = run_bench(models["ar"], ["greedy", "sample"], ["copy"], limit=1, gen_len=8, compare=[models["ar"]])
    assert [m["name"] for m in r["methods"]] == ["greedy", "sample"]


def test_method_help():
    import functools

    def fn(adapter, prompts, gen_len, k=1):
        """Decodes k at a time.

        More text."""
    assert method_help(functools.partial(fn, k=2)) == "Decodes k at a time."
    assert method_help(get_method("vanilla", "dllm")).startswith("LLaDA")
    assert method_help(lambda a, p, g: None) == ""


def test_prompt_sets_replace_the_suite_split(models):
    """The prompt-source hook: named example sets become the report's task columns."""
    from accel.data.tasks import test_split
    r = run_bench(models["dllm"], ["vanilla"], prompt_sets={"mine": test_split("copy", 3)}, gen_len=32, batch_size=3)
    assert r["tasks"] == ["mine"] and {x["task"] for x in r["rows"]} == {"mine", "all"}
    assert [x["n"] for x in r["rows"] if x["task"] == "mine"] == [3]


# ------------------------------------------------------------------ answer TPF, the sweep and AUP
def test_aup_formula_on_hand_points():
    from accel.decoding.report import aup
    # one point: rho * y
    assert aup([(2.0, 80.0)], y_max=80.0) == pytest.approx(160.0)
    # no accuracy loss: W = 1 everywhere, the plain area (first rectangle + trapezoids)
    assert aup([(1.0, 90.0), (3.0, 90.0)], y_max=90.0) == pytest.approx(90 + 2 * 90)
    # order does not matter; a drop is weighted by exp(-3 (1 - y / y_max))
    w = math.exp(-3 * (1 - 85 / 90))
    want = 1.0 * 90 + 0.5 * (4.0 - 1.0) * (90 + 85 * w)
    assert aup([(4.0, 85.0), (1.0, 90.0)], y_max=90.0) == pytest.approx(want)
    # points more than 5 accuracy points below the least parallel one are left out
    assert aup([(1.0, 90.0), (4.0, 85.0), (9.0, 60.0)], y_max=90.0) == pytest.approx(want)
    # a faster curve at the same accuracy scores higher; a lossy one scores less than a lossless one
    assert aup([(1.0, 90.0), (5.0, 90.0)], 90.0) > aup([(1.0, 90.0), (3.0, 90.0)], 90.0)
    assert aup([(1.0, 90.0), (3.0, 87.0)], 90.0) < aup([(1.0, 90.0), (3.0, 90.0)], 90.0)
    with pytest.raises(ValueError):
        aup([], 90.0)


def test_answer_tpf_counts_forwards_until_the_answer_is_unmasked(report):
    for r in report["rows"]:
        assert 0 < r["answer_nfe"] <= r["nfe"]
        assert r["answer_tokens_per_forward"] == pytest.approx(r["tokens"] / (r["answer_nfe"] * r["n"]))
        assert r["answer_tokens_per_forward"] >= r["tokens_per_forward"] - 1e-9


def test_vanilla_answer_nfe_is_where_the_answer_stops_changing(tiny_adapter, tok):
    from accel.data.tokenizer import chat_prompt_ids
    a = tiny_adapter("dllm")
    prompts = [chat_prompt_ids(tok, "copy 123"), chat_prompt_ids(tok, "sort 4321")]
    full = dllm.generate_vanilla(a, prompts, gen_len=32, block_len=32)
    assert full.nfe == [32, 32]
    calls = []
    real = a.dllm_logits

    def spy(x, *args, **kw):  # the canvas each forward sees: the output is fixed once the answer has no mask
        calls.append(x.clone())
        return real(x, *args, **kw)
    a.dllm_logits = spy
    try:
        again = dllm.generate_vanilla(a, prompts, gen_len=32, block_len=32)
    finally:
        del a.dllm_logits
    assert again.tokens == full.tokens
    P = calls[0].shape[1] - 32
    for i, k in enumerate(full.extra["answer_nfe"]):
        assert 1 <= k <= 32
        if k < 32:  # the canvas seen by forward k+1 (after k forwards) already has the final answer
            n = len(full.tokens[i])
            assert calls[k][i, P:P + n].tolist() == full.tokens[i]
            assert not dllm.answer_complete(calls[k - 1][i:i + 1], P, a.mask_id, a.eos_ids).item()


def test_sweep_runs_each_knob_value_and_reports_aup(models, tmp_path):
    rep = run_bench(models["dllm"], ["vanilla", "fast-dllm", "entropy-threshold"], ["copy"], limit=2, gen_len=32,
                    batch_size=2, sweep=True, compare=[models["ar"]])
    names = [m["name"] for m in rep["methods"]]
    fast = get_method("fast-dllm", "dllm")
    assert fast.knob == "threshold" and len(fast.sweep) >= 4
    assert names[:2] == ["vanilla", "fast-dllm"]
    for v in fast.sweep:
        if v != 0.9:
            assert f"fast-dllm@threshold={v:g}" in names
    meta = {m["name"]: m for m in rep["methods"]}
    assert meta["fast-dllm@threshold=0.5"]["sweep_of"] == "fast-dllm"
    assert meta["fast-dllm@threshold=0.5"]["value"] == 0.5 and "sweep_of" not in meta["vanilla"]
    assert set(rep["aup"]) == {"vanilla", "fast-dllm", "entropy-threshold", "greedy"}
    rows = {(r["method"], r["task"]): r for r in rep["rows"]}
    v = rows[("vanilla", "all")]
    y_max = max(100 * r["accuracy"] for (m, t), r in rows.items() if t == "all")
    from accel.decoding.report import aup
    assert v["aup"] == pytest.approx(aup([(v["answer_tokens_per_forward"], 100 * v["accuracy"])], y_max))
    pts = [(r["answer_tokens_per_forward"], 100 * r["accuracy"]) for (m, t), r in rows.items()
           if t == "all" and m.split("@")[0] == "fast-dllm"]
    assert len(pts) == len(fast.sweep)
    assert rows[("fast-dllm", "all")]["aup"] == pytest.approx(aup(pts, y_max))
    reporting.plot_report(rep, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    overall, _ = reporting.report_tables(rep)
    assert "AUP" in [c.header for c in overall.columns]


def test_dtype_loads_the_backbone_in_it_and_the_report_says_so(models):
    from accel.models.backbone import BackboneError
    t = load_target(models["ar"], dtype="bf16")
    assert next(t.adapter.model.parameters()).dtype == torch.bfloat16
    r = run_bench(t, ["greedy"], ["copy"], limit=1, gen_len=8)
    assert r["dtype"] == "bfloat16" and r["rows"]
    assert run_bench(models["ar"], ["greedy"], ["copy"], limit=1, gen_len=8)["dtype"] == "float32"
    with pytest.raises(BackboneError, match="--dtype fp8: choose one of auto, fp32, bf16, fp16"):
        load_target(models["ar"], dtype="fp8")
