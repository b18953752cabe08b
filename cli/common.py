"""CLI plumbing shared by every command group: one-line errors, no tracebacks for user mistakes."""
from __future__ import annotations

import contextlib

import typer
from typer.core import TyperCommand

from accel.core.errors import UserError  # noqa: F401 (re-exported: the CLI's callers import it from here)


def fail(message: str, code: int = 2):
    """Print one clear line to stderr and exit non-zero."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user: every layer's errors derive from UserError."""
    return (UserError, FileNotFoundError)


@contextlib.contextmanager
def user_errors():
    """Turn known user-facing exceptions into `fail()` (one line, exit 2), worded with the flags that set
    what they name (`accel.cli.options.worded`)."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001 - filtered just below
        if isinstance(e, user_error_types()):
            from accel.cli.options import worded
            fail(worded(e))
        raise


class PlainUsage(TyperCommand):
    """Usage lines as people write them (`accel bench [OPTIONS] TARGET`): typer marks required
    arguments as `{target}`, which reads like a template placeholder."""

    def collect_usage_pieces(self, ctx):
        return [p.replace("{", "").replace("}", "") for p in super().collect_usage_pieces(ctx)]
