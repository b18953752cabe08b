"""A recipe can live in one folder outside accel: the files docs/architecture.md's "Adding a recipe"
lists, registered through the ``accel.recipes`` entry-point group, then trained, exported and benched
by the `accel` command in a fresh process, with nothing in accel edited.

The recipe ("my-thresh") is the smallest real one: its "training" records a confidence threshold in
the run's typed `Spec` (RUN/spec.json), its export writes that Spec into a checkpoint that references
the tiny dLLM, and its bench row decodes Fast-dLLM-style at that threshold.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import accel.recipes as recipes
from accel.recipes.recipe import Recipe

FILES = {
    "__init__.py": '''
        """my-thresh: a confidence threshold "trained" into a checkpoint and benched as a Fast-dLLM row."""
        from accel.recipes.recipe import packaged

        RECIPE = packaged(__name__, name="my-thresh", group="train", summary="A threshold as a checkpoint.",
                          formats=("accel",), kind="dllm")
    ''',
    "config.py": '''
        from dataclasses import dataclass

        from accel.trainers.config import TrainConfig, _f


        @dataclass
        class Config(TrainConfig):
            output_dir: str = _f("runs/my-thresh", "Run directory.")
            backbone: str = _f("builtin:dllm", "The dLLM the checkpoint decodes with.")
            threshold: float = _f(0.9, "Confidence threshold the exported decoder unmasks at.")

            def validate(self) -> None:
                super().validate()
                if not 0 < self.threshold < 1:
                    self.reject("threshold", "must be in (0, 1)")
    ''',
    "spec.py": '''
        from dataclasses import dataclass

        from accel.decoding.spec import OWN, CheckpointSpec, SpecError, spec_field


        @dataclass(frozen=True, kw_only=True)
        class Spec(CheckpointSpec):
            SECTION = "my_thresh"

            method: str = spec_field("my-thresh", where=("decode",), help="decode default row")
            threshold: float = spec_field(where=(OWN, "decode"), settable=True, help="unmask at this confidence")
            block_len: int = spec_field(16, where=(OWN, "decode"), help="semi-AR block length")
            gen_len: int = spec_field(32, where=("decode",), settable=True, help="decode default generation length")

            def validate(self) -> None:
                if not 0 < self.threshold < 1:
                    raise SpecError(f"threshold={self.threshold} must be in (0, 1)")
                super().validate()
    ''',
    "inference.py": '''
        from my_thresh.spec import Spec

        METHODS = {"my-thresh": "Fast-dLLM at the trained threshold"}
        DEFAULT_METHODS = ("vanilla", "my-thresh")


        def bench_methods(ckpt, adapter) -> dict:
            from accel.decoding.methods import DecodeMethod, get_method
            s = ckpt.spec(Spec)
            base = get_method("fast-dllm", "dllm", {"threshold": s.threshold, "block_len": s.block_len})
            return {"my-thresh": DecodeMethod("my-thresh", "dllm", f"Fast-dLLM at the trained threshold {s.threshold}",
                                              base.run, options=base.options)}
    ''',
    "train.py": '''
        import json

        from my_thresh.spec import Spec


        def run(cfg):
            from accel.core.files import write_atomic
            from accel.recipes.shared.run_export import write_run_spec
            from accel.trainers.rundir import prepare_run_dir
            run_dir = prepare_run_dir(cfg, "my-thresh")
            write_atomic(run_dir / "my_thresh.json", json.dumps({"backbone": cfg.backbone}))
            write_run_spec(run_dir, Spec(threshold=cfg.threshold))
            return run_dir
    ''',
    "export.py": '''
        from my_thresh.spec import Spec


        def export(run_dir, out_dir, format=None, **overrides):
            from accel.decoding.checkpoint import check_options, override_spec, save_checkpoint
            from accel.recipes.shared.run_export import accel_only, read_run, read_run_spec
            check_options(Spec, overrides, "my-thresh")
            accel_only(format, "my-thresh")
            run, settings = read_run(run_dir, "my_thresh.json", "my_thresh.json", "my-thresh", "settings")
            spec = override_spec(read_run_spec(run, Spec, settings), overrides, "my-thresh")
            return save_checkpoint(out_dir, {"recipe": "my-thresh", "backbone": settings["backbone"]}, spec=spec)
    ''',
    "configs/quick.yaml": '''
        recipe: my-thresh
        threshold: 0.7
    ''',
}


@pytest.fixture
def plugin(tmp_path):
    """PYTHONPATH for a process that sees the recipe: its folder plus an installed distribution's
    metadata naming it in the accel.recipes entry-point group."""
    root = tmp_path / "site"
    for name, text in FILES.items():
        f = root / "my_thresh" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text).lstrip())
    info = root / "my_thresh_recipe-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-thresh-recipe\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[accel.recipes]\nmy-thresh = my_thresh:RECIPE\n")
    return root


def _accel(plugin: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "accel.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=plugin.parent)


def test_a_recipe_in_its_own_folder_trains_exports_and_benches(plugin, tmp_path, tiny_dir):
    from accel.decoding.checkpoint import load_checkpoint
    run, ckpt, report = tmp_path / "run", tmp_path / "ckpt", tmp_path / "bench.json"
    # --config NAME: the recipe's own configs/quick.yaml (threshold 0.7), then a key=value on top
    r = _accel(plugin, "train", "my-thresh", "--config", "quick", "--output", str(run), f"backbone={tiny_dir('dllm')}")
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "spec.json").read_text())["my_thresh"]["threshold"] == 0.7
    r = _accel(plugin, "train", "my-thresh", "--config", "nope", "--output", str(tmp_path / "r2"))
    assert r.returncode == 2 and "my-thresh's configs: quick" in r.stderr
    # wrong backbone kind: refused from the recipe's declared kind before any run directory is made
    r = _accel(plugin, "train", "my-thresh", "--output", str(tmp_path / "r3"), "backbone=builtin:ar")
    assert r.returncode == 2 and "my-thresh needs a diffusion LM" in r.stderr and not (tmp_path / "r3").exists()

    r = _accel(plugin, "export", str(run), "--out", str(ckpt), "--set", "gen_len=64")
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(ckpt)
    assert ck.accel["recipe"] == "my-thresh"
    assert ck.accel["my_thresh"] == {"threshold": 0.7, "block_len": 16}
    assert ck.accel["decode"] == {"method": "my-thresh", "threshold": 0.7, "block_len": 16, "gen_len": 64}

    r = _accel(plugin, "bench", str(ckpt), "--task", "copy", "--limit", "2", "--batch-size", "2", "--json", str(report))
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    assert rep["gen_len"] == 64  # the checkpoint's decode default
    rows = {x["method"]: x for x in rep["rows"] if x["task"] == "all"}
    assert list(rows) == ["vanilla", "my-thresh"] and rows["vanilla"]["nfe"] == 64
    assert 1 <= rows["my-thresh"]["nfe"] <= 64 and rep["methods"][1]["help"].endswith("0.7")


def test_register_adds_a_recipe_once():
    from accel.trainers.config import TrainConfig
    extra = Recipe(name="registered-once", group="train", summary="For the registry test.", Config=TrainConfig,
                   train=lambda cfg: Path(cfg.output_dir))
    saved = recipes.RECIPES
    try:
        assert recipes.register(extra) is extra and recipes.get("registered_once") is extra
        with pytest.raises(ValueError, match="already registered"):
            recipes.register(extra)
        with pytest.raises(TypeError):
            recipes.register("registered-once")
    finally:
        recipes.RECIPES = saved
    assert "registered-once" not in [r.name for r in recipes.RECIPES]
