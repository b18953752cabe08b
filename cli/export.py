"""`accel export`: turn a training run into an inference checkpoint via its recipe's exporter.

The run directory records its resolved config as `config.yaml` with a top-level `recipe:` key
(written by the trainer); that names the recipe whose `export.export(run_dir, out_dir, ...)`
does the work.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from accel.cli.common import fail, user_errors


def command(
    run: Path = typer.Argument(..., help="A run directory from `accel train` / `accel distill` "
                                         "(the output_dir holding config.yaml and checkpoints)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write the inference checkpoint to "
                                                     "(replaced atomically if it is already a checkpoint)."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Output format, when the recipe has "
                                         "several (e.g. medusa: accel or vllm). Default: the recipe's own."),
    tree_nodes: Optional[int] = typer.Option(None, "--tree-nodes", help="Draft-head recipes (medusa, hydra): a "
                                             "fixed candidate tree of N nodes built from the measured head "
                                             "accuracies, overriding the run's tree_nodes; 0 = sized on the "
                                             "decoding device when the checkpoint loads."),
):
    """Export a run as an inference checkpoint for `accel decode` / `accel bench` (and vLLM where supported).

    Example:

      accel export runs/learn2pd --out ckpt/learn2pd && accel bench ckpt/learn2pd
    """
    with user_errors():
        recipe = read_run_recipe(run)
        exporter = recipe_exporter(recipe)
        kwargs = {} if format is None else {"format": format}
        if tree_nodes is not None:
            import inspect
            if "tree_nodes" not in inspect.signature(exporter.export).parameters:
                fail(f"--tree-nodes: recipe {recipe!r} has no draft tree")
            if tree_nodes < 0:
                fail(f"--tree-nodes {tree_nodes}: use >= 1 for a fixed tree or 0 to size it on the device")
            kwargs["tree_nodes"] = tree_nodes
        path = exporter.export(run, out, **kwargs)
    typer.echo(f"exported {recipe} run {run} to {path or out}")


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


def recipe_exporter(recipe: str):
    """`accel.recipes.<name>.export` of a listed recipe, or a one-line error."""
    import importlib

    from accel.cli.recipes import PLANNED, RECIPES

    entry = next((r for r in RECIPES if r.name == recipe), None)
    if entry is None:
        if recipe in PLANNED:
            fail(f"recipe {recipe!r} is not built yet in this version of accel, so its runs cannot be exported")
        fail(f"unknown recipe {recipe!r} in the run's config.yaml; known: {', '.join(r.name for r in RECIPES)}")
    name = entry.module + ".export"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            fail(f"recipe {recipe!r} has no exporter ({name}) in this version of accel")
        raise
