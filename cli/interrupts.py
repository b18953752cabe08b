"""Ctrl-C and a full disk during long commands: one line that says what is safe, no traceback.

Every writer in accel publishes by rename (checkpoints, exports, data shards), so an interrupted
or failed write leaves the previous state intact; these handlers only have to say so."""
from __future__ import annotations

import contextlib
import errno

import typer

from accel.cli.common import fail

_FULL = {errno.ENOSPC, errno.EDQUOT}


@contextlib.contextmanager
def interruptible(safe: str):
    """`safe` completes "nothing is lost: ..." (e.g. "rerun the same command to resume from RUN")."""
    try:
        yield
    except KeyboardInterrupt as e:
        if getattr(e, "accel_told", False):  # a data generator already said what it kept
            raise typer.Exit(130) from None
        fail(f"interrupted; nothing is lost: {safe}", code=130)
    except OSError as e:
        if e.errno not in _FULL:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        fail(f"no space left on the device{where}; free some space, then {safe}", code=1)
    except typer.Exit:
        raise
