"""How a recipe declares the `accel data` commands that build its training data, without the CLI
naming the recipe: each is a `DataCommand` (name, help, options, run) on `Recipe.data_commands`, and
`accel.cli.data` turns every declared one into a command with these flags.

The declaration holds no typer and no torch: `run` is usually `lazy` and imports the heavy modules
when called, so `accel --help` stays instant. The CLI prints one line per `UserError` that `run`
raises and echoes the line it returns.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

REQUIRED = ...
"""An `Option` default meaning: the flag must be given."""


@dataclass(frozen=True)
class Option:
    """One flag of a data command: `--name-with-dashes` unless `flags` says otherwise."""
    default: Any
    help: str = ""
    flags: tuple[str, ...] = ()
    """e.g. ("--out", "-o"); empty: ``--<name>`` with '_' written '-'."""
    type: Any = None
    """The value's type when the default does not say it (None, REQUIRED, a list)."""
    common: str = ""
    """The name of an option several commands share ('device', 'auto_device', 'tasks', 'seed',
    'trust_remote_code'): the CLI gives it its one flag and help; `help` and `flags` are then unused."""


@dataclass(frozen=True)
class DataCommand:
    name: str
    """`accel data NAME`."""
    help: str
    """Its --help text (first line: the summary)."""
    run: Callable[..., str]
    """run(progress=None, **options) -> the line printed when done; progress(done, total) reports
    progress where the command has a long loop. Raises `UserError` for anything the user can fix."""
    options: dict[str, Option] = field(default_factory=dict)
    """{parameter name: Option}, in --help order."""
