"""One progress bar for a long phase of work: what a user watches while a step takes minutes.

Phases that decode many prompts (oracle data, trajectories, τ calibration) show a bar with a
count and the time left; with ``enabled=False`` (tests, quiet runs) it does nothing.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextlib.contextmanager
def phase_bar(label: str, total: int, enabled: bool = True, done: int = 0) -> Iterator[Callable[[int], None]]:
    """A bar titled `label` over `total` units (`done` already finished); yields advance(n=1)."""
    if not enabled:
        yield lambda n=1: None
        return
    prog = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    task = prog.add_task(label, total=total, completed=done)
    with prog:
        yield lambda n=1: prog.advance(task, n)
