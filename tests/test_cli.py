"""`accel bench` / `accel decode` / `accel export` from the command line: help, happy paths, bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import accel.recipes as recipes
from accel.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def dllm_dir(tiny_dir):
    return tiny_dir("dllm")


def _torch_free(args: list[str]) -> str:
    code = ("import sys\nfrom accel.cli.main import app\n"
            f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout


@pytest.mark.parametrize("args", [["--help"], ["bench", "--help"], ["decode", "--help"], ["export", "--help"]])
def test_help_does_not_import_torch(args):
    out = _torch_free(args)
    assert out.strip().endswith("NO-TORCH"), out
    assert "Usage" in out


def test_cheap_errors_do_not_import_torch(tmp_path):
    assert _torch_free(["bench", str(tmp_path / "missing")]).strip().endswith("NO-TORCH")
    assert _torch_free(["bench", "builtin:dllm", "--method", "nope"]).strip().endswith("NO-TORCH")


def _one_line_error(result, *words):
    assert result.exit_code != 0, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_bench_inputs(dllm_dir, tmp_path):
    (tmp_path / "not_a_model").mkdir()
    cases = [
        (["bench", str(tmp_path / "missing")], ["does not exist"]),
        (["bench", str(tmp_path / "not_a_model")], ["not a model directory", "config.json"]),
        (["bench", dllm_dir, "--task", "nope"], ["unknown task 'nope'", "arith"]),
        (["bench", dllm_dir, "--method", "nope"], ["unknown method 'nope'", "vanilla"]),
        (["bench", dllm_dir, "--method", "greedy"], ["a method for ar models"]),
        (["bench", dllm_dir, "--gen-len", "50"], ["--gen-len 50", "block length 32"]),
        (["bench", dllm_dir, "--gen-len", "64", "--block-len", "48"], ["block length 48"]),
        (["bench", dllm_dir, "--limit", "0"], ["--limit must be >= 1"]),
        (["bench", dllm_dir, "--json", str(tmp_path / "nodir" / "r.json")], ["--json", "does not exist"]),
        (["bench", dllm_dir, "--json", str(tmp_path)], ["--json", "is a directory"]),
        (["bench", dllm_dir, "--plot", str(tmp_path / "p.txt")], ["--plot", ".png"]),
        (["bench", dllm_dir, "--opt", "threshold"], ["not key=value"]),
        (["bench", dllm_dir, "--method", "vanilla", "--opt", "threshold=0.5"], ["no selected method"]),
        (["bench", "builtin:nope"], ["choose builtin:dllm, builtin:ar, builtin:dllm-long"]),
        (["bench", dllm_dir, "--compare", str(tmp_path / "missing")], ["does not exist"]),
        (["decode", str(tmp_path / "missing"), "--prompt", "copy 1"], ["does not exist"]),
        (["decode", dllm_dir, "--prompt", "copy 1", "--method", "nope"], ["unknown method"]),
        (["decode", dllm_dir, "--prompt", "copy 1", "--gen-len", "33"], ["--gen-len 33"]),
        (["decode", dllm_dir, "--prompt", "copy 1", "--dtype", "fp8"], ["--dtype fp8", "bf16"]),
        (["bench", dllm_dir, "--dtype", "half"], ["--dtype half", "bf16"]),
    ]
    for args, words in cases:
        _one_line_error(runner.invoke(app, args), *words)


def test_unwritable_json(dllm_dir, tmp_path, monkeypatch):
    # chmod does not stop root (CI containers), so simulate a read-only directory
    from accel.decoding import report
    ro = tmp_path / "ro"
    ro.mkdir()
    real = report.os.access
    monkeypatch.setattr(report.os, "access", lambda p, mode: False if str(p) == str(ro) else real(p, mode))
    _one_line_error(runner.invoke(app, ["bench", dllm_dir, "--json", str(ro / "r.json")]), "not writable")


def test_bad_input_in_a_real_process(tmp_path):
    p = subprocess.run([sys.executable, "-m", "accel.cli.main", "bench", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "does not exist" in p.stderr


def test_bench_writes_json_and_plot(dllm_dir, tmp_path):
    r = runner.invoke(app, ["bench", dllm_dir, "-m", "vanilla", "--task", "copy", "--limit", "2", "--gen-len", "32",
                            "--batch-size", "2", "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(x["method"], x["task"]) for x in report["rows"]] == [("vanilla", "copy"), ("vanilla", "all")]
    assert report["rows"][-1]["speedup"] == 1.0 and report["rows"][-1]["nfe"] == 32
    assert (tmp_path / "p.png").stat().st_size > 0
    assert "vanilla" in r.stdout and "speedup" in r.stdout


def test_decode_prints_text_and_nfe(dllm_dir):
    r = runner.invoke(app, ["decode", dllm_dir, "--prompt", "copy 123", "--gen-len", "32"])
    assert r.exit_code == 0, r.output
    assert "[vanilla] nfe=32" in r.stderr


def _run_dir(tmp_path, text):
    d = tmp_path / "run"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(text)
    return d


def test_export_errors(tmp_path, monkeypatch):
    from accel.recipes.recipe import Recipe
    from accel.trainers.config import TrainConfig
    monkeypatch.setattr(recipes, "RECIPES", recipes.RECIPES + (Recipe("ghost", "train", "", TrainConfig, train=print),))
    monkeypatch.setattr(recipes, "PLANNED", {"someday": "train"})
    out = str(tmp_path / "out")
    (tmp_path / "plain").mkdir()
    _one_line_error(runner.invoke(app, ["export", str(tmp_path / "missing"), "--out", out]), "does not exist")
    _one_line_error(runner.invoke(app, ["export", str(tmp_path / "plain"), "--out", out]), "not a run directory")
    for i, (text, words) in enumerate([
            ("recipe: someday\n", ["not built yet"]), ("recipe: nonsense\n", ["unknown recipe"]),
            ("recipe: ghost\n", ["no exporter"]), ("seed: 1\n", ["no top-level 'recipe:'"]),
            ("recipe: [unclosed\n", ["not valid YAML"])]):
        d = _run_dir(tmp_path / str(i), text)
        _one_line_error(runner.invoke(app, ["export", str(d), "--out", out]), *words)


def test_export_calls_the_recipe(tmp_path, monkeypatch):
    from accel.decoding.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from accel.recipes.recipe import Recipe
    from accel.trainers.config import TrainConfig
    calls = []

    def export(run_dir, out_dir, **kw):
        calls.append(kw)
        if kw.get("tau") == "bad":
            raise CheckpointError("tau 'bad' is not a number")
        return save_checkpoint(out_dir, {"recipe": "fake2", "backbone": "builtin:dllm"}, {"w": torch.ones(1)})

    monkeypatch.setattr(recipes, "RECIPES", recipes.RECIPES + (
        Recipe("fake2", "train", "", TrainConfig, train=print, exporters={"accel": export, "other": export}),))
    run = _run_dir(tmp_path, "recipe: fake2\nlearning_rate: 0.001\n")
    r = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "ck")])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "ck").recipe == "fake2" and calls == [{}]
    r = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "ck"), "--format", "bad"])
    _one_line_error(r, "--format bad: fake2 exports as accel or other")
    assert len(calls) == 1  # checked before the exporter runs


def test_long_teacher_not_built_is_one_line(monkeypatch, tmp_path):
    import accel.models.backbone as B
    import accel.models.weights as W
    for module in (B, W):  # an install without the long teachers (the loader's name and the teacher CLI's)
        monkeypatch.setattr(module, "builtin_dir", lambda kind: tmp_path / kind)
    _one_line_error(runner.invoke(app, ["bench", "builtin:dllm-long"]), "not built yet",
                    "accel teacher build ar-long", "accel teacher build dllm-long")
    _one_line_error(runner.invoke(app, ["teacher", "evaluate", "builtin:ar-long"]), "accel teacher build ar-long")
    _one_line_error(runner.invoke(app, ["teacher", "build", "long"]), "dllm-long, ar-long")
    _one_line_error(runner.invoke(app, ["teacher", "build", "dllm-long", "--out", str(tmp_path / "o")]),
                    "build that teacher first: accel teacher build ar-long")
