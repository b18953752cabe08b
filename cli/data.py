"""`accel data`: datasets the recipes train on, one command per `DataCommand` the registered recipes
declare (`Recipe.data_commands`; a command several recipes share is registered once). Torch is
imported only inside the commands."""
from __future__ import annotations

import contextlib
import inspect
from typing import Annotated

import typer

from accel.cli.common import user_errors
from accel.cli.options import AutoDevice, Device, PromptSeed, SuiteTasks, TrustRemoteCode
from accel.cli.quiet import quiet_libraries
from accel.recipes import RECIPES
from accel.recipes.data_commands import REQUIRED

app = typer.Typer(help="Build training data: teacher trajectories and oracle labels.", no_args_is_help=True)

_COMMON = {"auto_device": AutoDevice, "device": Device, "tasks": SuiteTasks, "seed": PromptSeed,
           "trust_remote_code": TrustRemoteCode}
"""The options several commands share (`Option.common`), with their one flag and help."""


def _parameter(name: str, opt) -> inspect.Parameter:
    if opt.common:
        annotation = _COMMON[opt.common]
    else:
        tp = opt.type if opt.type is not None else type(opt.default)
        annotation = Annotated[tp, typer.Option(*(opt.flags or (f"--{name.replace('_', '-')}",)), help=opt.help)]
    default = inspect.Parameter.empty if opt.default is REQUIRED else opt.default
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


@contextlib.contextmanager
def _progress_bar(label: str):
    """progress(done, total) for the command's long loop: a bar that appears on the first report."""
    state = {}

    def report(done: int, total: int):
        if "bar" not in state:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            state["bar"] = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                                    TimeRemainingColumn())
            state["bar"].start()
            state["task"] = state["bar"].add_task(label, total=total)
        state["bar"].update(state["task"], completed=done, total=total)
    try:
        yield report
    finally:
        if "bar" in state:
            state["bar"].stop()


def typer_command(cmd):
    """The typer command of a `DataCommand`: its options as flags, `run`'s UserErrors as one line."""
    def command(**options):
        with user_errors():
            quiet_libraries()
            with _progress_bar(cmd.name) as progress:
                line = cmd.run(progress=progress, **options)
        typer.echo(line)
    params = [_parameter(name, opt) for name, opt in cmd.options.items()]
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = cmd.help
    command.__name__ = cmd.name.replace("-", "_")
    return command


def register(app_: typer.Typer) -> None:
    """One command per data command the recipes declare, in registry order, each name once."""
    seen = set()
    for recipe in RECIPES:
        for cmd in recipe.data_commands:
            if cmd.name not in seen:
                seen.add(cmd.name)
                app_.command(cmd.name)(typer_command(cmd))


register(app)
