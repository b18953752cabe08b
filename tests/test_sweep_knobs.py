"""`accel bench --sweep` on D2F (tau_conf) and the joint sampler (K): several AUP points whose
forwards fall as the knob gets more parallel. Checkpoints are made by hand from untrained
weights (the sweep is a decode property; training is tested in the recipes' own tests)."""
import json
import shutil

import pytest


def _nfe_by_value(rep, method):
    meta = {m["name"]: m for m in rep["methods"]}
    out = {}
    for r in rep["rows"]:
        m = meta.get(r["method"], {})
        if r["task"] == "all" and m.get("sweep_of", r["method"]) == method:
            out[m["value"]] = r["nfe"]
    return out


def test_d2f_sweeps_tau_conf(tmp_path):
    """The built-in teacher as an (undistilled) D2F model: its confidences span the sweep, so a lower
    tau_conf unmasks more per forward."""
    from accel.decoding.bench import run_bench
    from accel.models.weights import builtin_dir
    from accel.recipes.d2f.export import export
    from accel.recipes.targets import load_target

    run = tmp_path / "run"
    shutil.copytree(builtin_dir("dllm"), run / "final")
    (run / "d2f.json").write_text(json.dumps({"teacher": "builtin:dllm", "block_len": 8, "tau_add": 0.1,
                                              "tau_act": 0.95, "tau_conf": 0.9, "train_gen_len": 32}))
    target = load_target(str(export(run, tmp_path / "ckpt")))
    d2f = target.recipe_methods["d2f"]
    assert d2f.knob == "tau_conf" and d2f.sweep[0] == 0.99 and d2f.sweep[-1] == 0.5
    rep = run_bench(target, ["d2f"], ["arith", "shuffle", "pick3"], limit=4, gen_len=32, batch_size=4, sweep=True)
    nfe = _nfe_by_value(rep, "d2f")
    assert sorted(nfe, reverse=True) == list(d2f.sweep) and len(nfe) >= 6
    vals = sorted(nfe, reverse=True)  # careful -> parallel
    assert all(nfe[a] >= nfe[b] for a, b in zip(vals, vals[1:])), nfe
    assert nfe[0.99] > nfe[0.5], nfe
    assert rep["aup"]["d2f"]["all"] > 0


@pytest.fixture(scope="module")
def joint_ckpt(tmp_path_factory, tiny_dir, tiny_adapter):
    """An untrained (identity) sampler layer exported as a joint-sampler checkpoint over a tiny dLLM."""
    from accel.core.files import save_tensors
    from accel.recipes.joint_sampler.export import export
    from accel.recipes.joint_sampler.layer import build_sampler
    from accel.recipes.joint_sampler.train import SAMPLER_FILE, SETTINGS_FILE

    tmp = tmp_path_factory.mktemp("joint")
    layer = build_sampler(tiny_adapter("dllm"))
    save_tensors({k: v.float().contiguous() for k, v in layer.state_dict().items() if not k.startswith("rotary.")},
                 tmp / SAMPLER_FILE)
    (tmp / SETTINGS_FILE).write_text(json.dumps({
        "backbone": tiny_dir("dllm"), "layer": layer.cfg, "token_input": "add", "block_len": 16, "gen_len": 32,
        "max_k": 4, "k_default": 2, "temperature": 1.0, "top_m": 2}))
    return export(tmp, tmp / "ckpt")


def test_joint_sampler_sweeps_k(joint_ckpt):
    from accel.decoding.bench import run_bench
    from accel.recipes.targets import load_target

    target = load_target(str(joint_ckpt))
    methods = target.recipe_methods
    assert methods["marginal"].sweep == (1, 2, 3, 4, 6, 8)
    assert methods["joint-sampler"].sweep == (1, 2, 3, 4)  # stops at the trained max_k
    assert methods["sequential"].knob is None
    rep = run_bench(target, ["marginal", "joint-sampler"], ["pick3"], limit=2, gen_len=32, batch_size=2,
                    sweep=True)
    for name, ks in (("marginal", (1, 2, 3, 4, 6, 8)), ("joint-sampler", (1, 2, 3, 4))):
        nfe = _nfe_by_value(rep, name)
        assert sorted(nfe) == list(ks), nfe
        assert all(nfe[a] > nfe[b] for a, b in zip(ks, ks[1:])), nfe  # K tokens per forward: strictly fewer
        assert rep["aup"][name]["all"] >= 0  # a random model scores 0: the point is that AUP exists
    rows = {r["method"]: r for r in rep["rows"] if r["task"] == "all"}
    assert "tv" in rows["joint-sampler"] and "tv" not in rows["joint-sampler@k=4"]  # TV only at its own K
