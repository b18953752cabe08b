"""`accel export`: turn a training run into an inference checkpoint via its recipe's exporter.

The run directory records its resolved config as `config.yaml` with a top-level `recipe:` key
(written by the trainer); the registry (`accel.recipes`) maps that name to the recipe, whose
exporter for the chosen format does the work.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from accel.cli.common import fail, user_errors
from accel.recipes import RECIPES, lookup

_FORMATS = "; ".join(f"{r.name}: {' or '.join(r.formats)}" for r in RECIPES if len(r.formats) > 1)
_TREES = ", ".join(r.name for r in RECIPES if "tree_nodes" in r.option_types)


def command(
    run: Path = typer.Argument(..., metavar="RUN", help="A run directory from `accel train` / `accel distill` "
                                         "(the output_dir holding config.yaml and checkpoints)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write the inference checkpoint to "
                                                     "(replaced atomically if it is already a checkpoint)."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Output format, when the recipe has "
                                         f"several ({_FORMATS}). Default: the recipe's first."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a decode setting recorded in the "
                                             "checkpoint, key=value (repeatable), e.g. --set tau=0.95 (learn2pd), "
                                             "--set threshold=0.3 (dparallel), --set gen_len=256."),
    tree_nodes: Optional[int] = typer.Option(None, "--tree-nodes", help=f"Draft-tree recipes ({_TREES}): "
                                             "a fixed candidate tree of N nodes built from the measured head "
                                             "accuracies, overriding the run's tree_nodes; 0 = sized on the "
                                             "decoding device when the checkpoint loads (same as --set tree_nodes=N)."),
):
    """Export a run as an inference checkpoint for `accel decode` / `accel bench` (and vLLM where supported).

    Example:

      accel export runs/learn2pd --out ckpt/learn2pd && accel bench ckpt/learn2pd

      accel export runs/learn2pd --out ckpt/l2p-tau95 --set tau=0.95
    """
    from accel.cli.interrupts import interruptible
    with user_errors():
        recipe = lookup(read_run_recipe(run), context=f"{run}/config.yaml")
        options = _pairs(set_)
        if tree_nodes is not None:
            if "tree_nodes" not in recipe.option_types:
                fail(f"--tree-nodes: recipe {recipe.name!r} has no draft tree")
            if tree_nodes < 0:
                fail(f"--tree-nodes {tree_nodes}: use >= 1 for a fixed tree or 0 to size it on the device")
            options["tree_nodes"] = str(tree_nodes)
        safe = (f"{out} is as it was (an export is written beside it and renamed into place only when complete); "
                "rerun the export")
        with interruptible(safe):
            path = recipe.export(run, out, format, **options)
    typer.echo(f"exported {recipe.name} run {run} to {path or out}")


def read_run_recipe(run: Path) -> str:
    """The recipe name from RUN/config.yaml, with one-line errors for anything that is not a run."""
    import yaml

    if not run.exists():
        fail(f"run directory {run} does not exist; pass the output_dir of `accel train` or `accel distill`")
    if not run.is_dir():
        fail(f"{run} is a file; pass the run directory (the output_dir of `accel train` or `accel distill`)")
    cfg_file = run / "config.yaml"
    if not cfg_file.is_file():
        hint = " (it looks like an inference checkpoint already)" if (run / "config.json").exists() else ""
        fail(f"{run} is not a run directory: no config.yaml in it{hint}; pass the output_dir of a training run")
    try:
        cfg = yaml.safe_load(cfg_file.read_text())
    except yaml.YAMLError as e:
        fail(f"{cfg_file} is not valid YAML: {str(e).splitlines()[0]}")
    if not isinstance(cfg, dict) or not cfg.get("recipe"):
        fail(f"{cfg_file} has no top-level 'recipe:' key; was this run written by accel train/distill?")
    return str(cfg["recipe"])


def _pairs(items: Optional[List[str]]) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--set {item!r} is not key=value (e.g. --set tau=0.95)")
        out[key.strip()] = value.strip()
    return out
