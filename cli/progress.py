"""The progress line long commands (`accel bench`, `accel eval`) show on stderr while they load and decode."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def progress_line(err, description: str):
    """Yields progress(done, total, description): a transient bar on the `err` console, starting at
    `description` with no total (loading)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        job = bar.add_task(description, total=None)

        def progress(done, total, what):
            bar.update(job, completed=done, total=total, description=what)

        yield progress
