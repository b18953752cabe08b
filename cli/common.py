"""CLI plumbing shared by every command group: one-line errors, no tracebacks for user mistakes."""
from __future__ import annotations

import contextlib
import sys

import typer


class UserError(Exception):
    """A mistake in the user's input; its message says what was wrong and how to fix it."""


def fail(message: str, code: int = 2):
    """Print one clear line to stderr and exit non-zero."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user (imported lazily: no torch here)."""
    types: list[type[BaseException]] = [UserError, FileNotFoundError]
    for mod, name in [("accel.models.backbone", "BackboneError"), ("accel.data.tasks", "UnknownTaskError"),
                      ("accel.decoding.checkpoint", "CheckpointError"), ("accel.trainers.config", "ConfigError"),
                      ("accel.decoding.methods", "MethodError"), ("accel.decoding.bench", "BenchError"),
                      ("accel.data.trajectories", "TrajectoryError"), ("accel.data.self_distill", "SelfDistillError"),
                      ("accel.data.sources", "SourceError"), ("accel.data.state_cache", "StateCacheError")]:
        m = sys.modules.get(mod)
        if m is not None and hasattr(m, name):
            types.append(getattr(m, name))
    return tuple(types)


@contextlib.contextmanager
def user_errors():
    """Turn known user-facing exceptions into `fail()` (one line, exit 2)."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001 - filtered just below
        if isinstance(e, user_error_types()):
            fail(str(e))
        raise
