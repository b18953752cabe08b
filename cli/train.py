"""`accel train RECIPE`: one subcommand per recipe of the 'train' group of the registry (`accel.recipes`).

`accel train NAME [--config FILE] [--output DIR] [--nproc N] [--continue] [key=value ...]`. `--help`
lists every config field (type, default, help) from the recipe's dataclass; the config is
loaded and validated before torch is imported, so typos fail instantly. `--nproc N` re-runs
the command under torchrun unless this process already is a distributed worker (RANK set).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from accel.cli import run_summary
from accel.cli.common import fail, user_errors
from accel.cli.quiet import quiet_libraries
from accel.recipes import PLANNED, RECIPES

app = typer.Typer(help="Train an accelerator with a recipe (accel train NAME --help lists its config).",
                  no_args_is_help=True)

_CTX = {"allow_extra_args": True, "ignore_unknown_options": True}


def help_text(entry, group: str) -> str:
    from accel.trainers.loading import describe_fields
    rows = describe_fields(entry.Config)
    w = max(len(r[0]) for r in rows)
    lines = [f"Usage: accel {group} {entry.name} [--config FILE.yaml] [--output DIR] [--nproc N] [--continue] "
             "[key=value ...]",
             "", entry.summary, "",
             "Config precedence: defaults < --config YAML < key=value. Options:",
             "  --config FILE   YAML with any of the keys below, or the name of a shipped one"
             + (f" ({', '.join(entry.config_names())})" if entry.config_names() else ""),
             "  --output DIR    run directory (same as output_dir=DIR)",
             "  --nproc N       processes on this node (re-launches under torchrun)",
             "  --trust-remote-code  let model code shipped with the backbone run (LLaDA, Dream);",
             "                  the same as trust_remote_code=true",
             "  --continue      train on in a finished run directory (e.g. after raising max_steps); without",
             "                  it, a finished run reports itself and exits 0. An unfinished run (killed,",
             "                  preempted) always resumes from its newest checkpoint.", "",
             "Config keys (key=value):"]
    for name, tp, default, h in rows:
        lines.append(f"  {name:<{w}}  {tp} = {default}")
        lines.append(f"  {'':<{w}}    {h}")
    return "\n".join(lines)


def run_recipe(group: str, entry, config: Optional[Path], output: Optional[str], nproc: int,
               overrides: list[str], continue_run: bool = False) -> None:
    """Load + validate the config (no torch yet), guard the run dir, maybe relaunch under torchrun, train."""
    from accel.trainers import runguard
    from accel.trainers.loading import load_config
    if nproc < 1:
        fail(f"--nproc {nproc}: must be >= 1")
    with user_errors():
        ov = list(overrides) + ([f"output_dir={output}"] if output else [])
        config = entry.resolve_config(config)
        cfg = load_config(entry.Config, config, ov, recipe=entry.name)
        runguard.check_recipe(cfg.output_dir, entry.name, f"accel {group} {entry.name}")
    from accel.cli.backbone_check import check_backbone
    wrong = check_backbone(entry, cfg)
    if wrong:
        fail(wrong)
    from accel.trainers.rundir import is_rank0
    if (runguard.finished_info(cfg.output_dir) is not None and not continue_run
            and not runguard.asks_for_more_steps(cfg)):
        if is_rank0():
            for line in run_summary.finished_lines(cfg.output_dir, entry.name, group):
                typer.echo(line)
        raise typer.Exit(0)
    from accel.trainers.launch import in_distributed_worker, relaunch
    if nproc > 1 and not in_distributed_worker():
        argv = ["-m", "accel.cli.main", group, entry.name] + (["--continue"] if continue_run else [])
        if config is not None:
            argv += ["--config", str(Path(config).resolve())]
        argv += [f"output_dir={cfg.output_dir}", *overrides]
        raise typer.Exit(relaunch(nproc, argv, cfg.output_dir))
    if is_rank0():
        with user_errors():
            runguard.lock_run_dir(cfg.output_dir)
        if continue_run or runguard.asks_for_more_steps(cfg):
            runguard.clear_finished(cfg.output_dir)
    quiet_libraries()
    from accel.trainers.trainer import TrainingError
    from accel.cli.interrupts import interruptible
    try:
        with interruptible(f"the newest complete checkpoint in {cfg.output_dir} is intact; rerun the same command "
                           "to resume from it"), user_errors():
            run_dir = entry.train(cfg)
    except TrainingError as e:
        fail(str(e), code=1)
    if is_rank0():
        runguard.mark_finished(run_dir, entry.name)
        for line in run_summary.done_lines(run_dir, entry.name):
            typer.echo(line)


def _make_command(group: str, entry):
    def command(ctx: typer.Context,
                config: Optional[str] = typer.Option(None, "--config", help="YAML config file, or a shipped config's name."),
                output: Optional[str] = typer.Option(None, "--output", help="Run directory (output_dir)."),
                nproc: int = typer.Option(1, "--nproc", help="Processes on this node (torchrun)."),
                trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                                       help="Same as trust_remote_code=true."),
                continue_run: bool = typer.Option(False, "--continue", help="Train on in a finished run."),
                show_help: bool = typer.Option(False, "--help", "-h", help="List every config key.")):
        if show_help:
            typer.echo(help_text(entry, group))
            raise typer.Exit(0)
        extra = ["trust_remote_code=true"] if trust_remote_code else []
        run_recipe(group, entry, config, output, nproc, list(ctx.args) + extra, continue_run)
    return command


def _planned_command(group: str, name: str):
    def command(ctx: typer.Context):
        fail(f"recipe {name!r} is not built yet in this version of accel; built: "
             + ", ".join(f"accel {r.group} {r.name}" for r in RECIPES))
    return command


def _other_group_command(entry):
    def command(ctx: typer.Context):
        fail(f"{entry.name} is a {entry.group} recipe: did you mean `accel {entry.group} {entry.name}`?")
    return command


def register(app_: typer.Typer, group: str) -> None:
    """One subcommand per recipe of `group` (also under its '_' spelling, hidden); the other group's
    recipes answer with the right command instead of "No such command"."""
    for entry in RECIPES:
        if entry.group == group:
            for name in dict.fromkeys([entry.name, entry.name.replace("-", "_")]):
                app_.command(name=name, help=entry.summary, add_help_option=False, hidden=name != entry.name,
                             context_settings=_CTX)(_make_command(group, entry))
        else:
            app_.command(name=entry.name, hidden=True, add_help_option=False,
                         context_settings=_CTX)(_other_group_command(entry))
    for name, g in PLANNED.items():
        if g == group:
            app_.command(name=name, help="(not built yet)", context_settings=_CTX)(_planned_command(group, name))


register(app, "train")

if __name__ == "__main__":  # pragma: no cover
    app(sys.argv[1:])
