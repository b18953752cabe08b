"""The recipe interface: every registered recipe satisfies it, and a new one needs one folder + one line.

`test_every_recipe_satisfies_the_interface` walks the registry; `test_a_new_recipe_runs_end_to_end`
registers a minimal recipe (what docs/architecture.md walks through) and drives it through the
CLI: accel train -> accel export -> accel bench.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import typing
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import accel.recipes as recipes
from accel.decoding.methods import DecodeMethod, available, get_method
from accel.recipes.data_commands import DataCommand
from accel.recipes.recipe import Recipe
from accel.trainers.config import TrainConfig, _f
from accel.trainers.loading import config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", recipes.RECIPES, ids=lambda r: r.name)
def test_every_recipe_satisfies_the_interface(recipe, tmp_path, tiny_adapter):
    assert recipe.name == recipes.normalize(recipe.name) and recipes.get(recipe.name.replace("-", "_")) is recipe
    assert recipe.group in ("train", "distill") and recipe.summary and recipe.kind in ("dllm", "ar")
    assert (ROOT / recipe.docs).is_file(), f"{recipe.name}: method note {recipe.docs} missing"
    # what the CLI asks the recipe instead of naming it: the backbone kinds it trains on, its data
    # commands, its shipped configs
    assert recipe.backbone_kinds and set(recipe.backbone_kinds) <= {"dllm", "ar"}
    assert all(isinstance(c, DataCommand) and c.name and c.help and callable(c.run) for c in recipe.data_commands)
    assert recipe.config_dir is not None and recipe.config_names(), f"{recipe.name}: no shipped configs"
    # the package exports exactly this object
    assert importlib.import_module(f"accel.recipes.{recipe.name.replace('-', '_')}").RECIPE is recipe
    # config round-trip: defaults -> config.yaml -> the same config
    assert issubclass(recipe.Config, TrainConfig)
    cfg = load_config(recipe.Config, None, [f"output_dir={tmp_path / 'run'}"], recipe=recipe.name)
    f = tmp_path / "config.yaml"
    f.write_text(yaml.safe_dump({"recipe": recipe.name, **config_to_dict(cfg)}))
    assert config_to_dict(load_config(recipe.Config, f, recipe=recipe.name)) == config_to_dict(cfg)
    assert callable(recipe.train) and all(callable(e) for e in recipe.exporters.values())
    if recipe.bench_methods is None:
        return
    # every default bench row is offered, and the baseline rows decode on the kind's teacher
    offered = set(recipe.methods) | set(available(recipe.kind))
    assert recipe.default_methods and set(recipe.default_methods) <= offered
    adapter = tiny_adapter(recipe.kind)
    prompt = [adapter.tokenizer("copy 12")["input_ids"]]
    for name in recipe.default_methods:
        if name in available(recipe.kind) and name not in recipe.methods:
            res = get_method(name, recipe.kind)(adapter, prompt, 32)
            assert len(res.tokens) == 1 and res.nfe[0] >= 1


_SAMPLE = {int: 4, float: 0.5, bool: True, str: "x", dict: {"a": 1}, list: [1, 2]}


@pytest.mark.parametrize("recipe,over,key", [
    ("eagle3", "ttt_steps=0", "ttt_steps"), ("eagle3", "step_decay=0", "step_decay"),
    ("eagle3", "feature_layers=[1,2]", "feature_layers"), ("eagle3", "data=x.txt", "data"), ("eagle3", "topk=0", "topk"),
    ("eagle3", "draft_vocab_size=1", "draft_vocab_size"), ("eagle3", "tree_nodes=0", "tree_nodes"),
    ("hydra", "variant=medusa", "variant"), ("hydra", "num_layers=0", "num_layers"), ("hydra", "dropout=1.5", "dropout"),
    ("hydra", "data=x.txt", "data"), ("hydra", "topk=0", "topk"), ("hydra", "loss=kl", "loss"),
    ("hydra", "data=x.jsonl tasks=[copy]", "tasks"), ("hydra", "tree_nodes=-1", "tree_nodes"),
    ("medusa", "data=x.txt", "data"), ("medusa", "topk=0", "topk"), ("medusa", "n_per_task=0", "n_per_task"),
    ("sft", "data=x.json", "data"), ("sft", "n_per_task=0", "n_per_task"),
])
def test_recipe_configs_reject_bad_values(recipe_cfg, recipe, over, key):
    """One line naming the key, from the recipe's own checks and the config sections it shares."""
    from accel.trainers.config import ConfigError
    with pytest.raises(ConfigError, match=f"^{key}="):
        recipe_cfg(recipe, *over.split())


@pytest.mark.parametrize("recipe", recipes.RECIPES, ids=lambda r: r.name)
def test_every_recipe_spec_round_trips_through_a_checkpoint(recipe, tmp_path):
    """The spec a recipe's exporter writes is what `InferenceCheckpoint.spec` reads back, typed; its
    settable fields are the export options; a missing field is one line naming the file and the fix."""
    from accel.decoding.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from accel.decoding.spec import CheckpointSpec
    if not recipe.exporters:
        assert recipe.Spec is None
        return
    Spec = recipe.Spec
    assert Spec is not None, f"{recipe.name} exports checkpoints but declares no Spec"
    assert issubclass(Spec, CheckpointSpec) and Spec.SECTION
    assert recipe.option_types == Spec.settable() and "gen_len" in recipe.option_types
    required = {f.name: _SAMPLE[typing.get_origin(t) or t] for f, t in zip(dataclasses.fields(Spec), Spec.types().values())
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    spec = Spec(**required)
    ck = save_checkpoint(tmp_path / "ck", {"recipe": recipe.name, "backbone": f"builtin:{recipe.kind}"}, spec=spec)
    loaded = load_checkpoint(ck)
    assert loaded.spec(Spec) == spec and type(loaded.spec(Spec)) is Spec
    assert loaded.decode_defaults(Spec).get("gen_len") == spec.gen_len  # None: the bench's default
    for name in required:  # drop one required field everywhere it is written
        cfg = json.loads((ck / "config.json").read_text())
        for section in cfg["accel"].values():
            if isinstance(section, dict):
                section.pop(name, None)
        bad = tmp_path / f"bad-{name}"
        bad.mkdir()
        (bad / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(CheckpointError, match=f"{name}.*accel export") as e:
            load_checkpoint(bad).spec(Spec)
        assert "config.json" in str(e.value) and len(str(e.value).splitlines()) == 1


def test_wrong_backbone_kind_is_checked_from_the_recipe():
    """Every recipe's kinds are checked (EAGLE-3 too); SFT trains on both kinds."""
    from types import SimpleNamespace

    from accel.cli.backbone_check import check_backbone
    for recipe in recipes.RECIPES:
        for kind in ("dllm", "ar"):
            wrong = check_backbone(recipe, SimpleNamespace(backbone=f"builtin:{kind}"))
            assert (wrong is None) == (kind in recipe.backbone_kinds), (recipe.name, kind, wrong)
    assert recipes.get("sft").backbone_kinds == ("dllm", "ar")
    assert "eagle3 needs an autoregressive model" in check_backbone(recipes.get("eagle3"),
                                                                     SimpleNamespace(backbone="builtin:dllm"))


def test_data_commands_keep_their_names_and_flags():
    """`accel data` is built from the recipes' declarations: the commands and flags users type."""
    from typer.main import get_command

    from accel.cli.data import app
    group = get_command(app)
    flags = {name: {o for p in cmd.params for o in p.opts} for name, cmd in group.commands.items()}
    assert set(flags) == {"learn2pd-oracle", "self-distill", "trajectories"}
    assert {"--out", "-o", "--backbone", "--prompts", "--tasks", "--n-per-task", "--gen-len", "--block-len",
            "--batch-size", "--device", "--seed", "--trust-remote-code", "--cache"} == flags["learn2pd-oracle"]
    assert {"--english", "--max-prompt-tokens", "--states", "--max-new-tokens"} <= flags["self-distill"]
    assert {"--teacher", "--task", "-t", "--limit", "--shard-size", "--keep-wrong"} <= flags["trajectories"]
    r = CliRunner().invoke(app, ["learn2pd-oracle", "--gen-len", "50"])
    assert r.exit_code == 2 and "--gen-len 50 must be a positive multiple of --block-len 32" in r.output


# ------------------------------------------------------------------ a minimal new recipe
@dataclasses.dataclass
class DummyConfig(TrainConfig):
    output_dir: str = _f("runs/dummy", "Run directory.")
    backbone: str = _f("builtin:dllm", "The dLLM to decode with.")
    threshold: float = _f(0.9, "Confidence threshold the exported decoder uses.")


def dummy_train(cfg: DummyConfig) -> Path:
    from accel.core.files import write_atomic
    from accel.trainers.rundir import prepare_run_dir
    run_dir = prepare_run_dir(cfg, "dummy")
    write_atomic(run_dir / "dummy.json", json.dumps({"backbone": cfg.backbone, "threshold": cfg.threshold}))
    return run_dir


def dummy_export(run_dir, out_dir, threshold: float | None = None) -> Path:
    import torch

    from accel.decoding.checkpoint import save_checkpoint
    s = json.loads((Path(run_dir) / "dummy.json").read_text())
    if threshold is not None:
        s["threshold"] = threshold
    return save_checkpoint(out_dir, {"recipe": "dummy", "backbone": s["backbone"],
                                     "decode": {"gen_len": 32}, "dummy": s},
                           tensors={"threshold": torch.tensor([s["threshold"]])})


def dummy_methods(ckpt, adapter) -> dict:
    thr = float(ckpt.tensors()["threshold"][0])
    base = get_method("fast-dllm", "dllm", {"threshold": thr, "block_len": 16})
    return {"dummy": DecodeMethod("dummy", "dllm", f"Fast-dLLM at the trained threshold {thr}", base.run,
                                  options=base.options)}


DUMMY = Recipe(name="dummy", group="train", summary="A minimal recipe for the interface test.", Config=DummyConfig,
               train=dummy_train, exporters={"accel": dummy_export}, export_options={"threshold": float},
               bench_methods=dummy_methods,
               default_methods=("vanilla", "dummy"), methods={"dummy": "Fast-dLLM at the trained threshold"})


def test_a_new_recipe_runs_end_to_end(tmp_path, tiny_dir):
    import accel.cli.main as main
    import accel.cli.train as train
    saved = recipes.RECIPES
    recipes.RECIPES = saved + (DUMMY,)
    try:
        app = importlib.reload(main) if importlib.reload(train) else None
        runner = CliRunner()
        run, ckpt = tmp_path / "run", tmp_path / "ckpt"
        r = runner.invoke(app.app, ["train", "dummy", "--output", str(run), f"backbone={tiny_dir('dllm')}",
                                    "threshold=0.8"])
        assert r.exit_code == 0, r.output
        assert yaml.safe_load((run / "config.yaml").read_text())["recipe"] == "dummy"
        r = runner.invoke(app.app, ["export", str(run), "--out", str(ckpt)])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app.app, ["bench", str(ckpt), "--task", "copy", "--limit", "2", "--batch-size", "2",
                                    "--json", str(tmp_path / "b.json")])
        assert r.exit_code == 0, r.output
        rep = json.loads((tmp_path / "b.json").read_text())
        assert rep["gen_len"] == 32  # the checkpoint's decode default
        rows = {x["method"]: x for x in rep["rows"] if x["task"] == "all"}
        assert list(rows) == ["vanilla", "dummy"] and rows["vanilla"]["nfe"] == 32
        assert 1 <= rows["dummy"]["nfe"] <= 32 and rep["methods"][1]["help"].endswith("0.800000011920929")
        r = runner.invoke(app.app, ["bench", str(ckpt), "-m", "nope"])
        assert r.exit_code == 2 and "choose from: dummy" in r.output
        # export --set: typed overrides of the recorded decode settings, strict like config keys
        for args, message in ((["--set", "thresh=0.5"], "did you mean threshold?"),
                              (["--set", "threshold=high"], "expected a number"),
                              (["--set", "threshold"], "not key=value")):
            r = runner.invoke(app.app, ["export", str(run), "--out", str(tmp_path / "c2"), *args])
            assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
        r = runner.invoke(app.app, ["export", str(run), "--out", str(tmp_path / "c2"), "--set", "threshold=0.5"])
        assert r.exit_code == 0, r.output
        from accel.decoding.checkpoint import load_checkpoint
        assert load_checkpoint(tmp_path / "c2").accel["dummy"]["threshold"] == 0.5
    finally:
        recipes.RECIPES = saved
        importlib.reload(train)
        importlib.reload(main)
