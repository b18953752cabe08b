"""`accel data`: not built yet."""
from __future__ import annotations

import typer

from accel.cli.common import fail

app = typer.Typer(help="(not built yet) accel data.", invoke_without_command=True)


@app.callback()
def _placeholder():
    fail("'accel data' is not built yet in this version of accel")
