"""`accel distill RECIPE`: the distillation recipes (group 'distill' in `recipes/__init__.py`).

Same interface as `accel train` (see `accel.cli.train`).
"""
from __future__ import annotations

import typer

from accel.cli.train import register

app = typer.Typer(help="Distill a model into a faster decoder with a recipe (accel distill NAME --help).",
                  no_args_is_help=True)
register(app, "distill")
