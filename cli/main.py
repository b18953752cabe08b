"""The `accel` command. Every group module imports torch lazily, so `--help` stays fast."""
from __future__ import annotations

import typer

from accel.cli import bench, data, decode, distill, evaluate, export, model, slurm, teacher, train
from accel.cli.common import PlainUsage

app = typer.Typer(
    help="Train, distill, export and benchmark decoding accelerators for language models.\n\n"
         "Start with `accel bench builtin:dllm` to see the baselines on the built-in tiny teacher.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
app.add_typer(train.app, name="train")
app.add_typer(distill.app, name="distill")
app.command(name="export", cls=PlainUsage)(export.command)
app.command(name="decode", cls=PlainUsage)(decode.command)
app.command(name="bench", cls=PlainUsage)(bench.command)
app.command(name="eval", cls=PlainUsage)(evaluate.command)
app.add_typer(data.app, name="data")
app.add_typer(slurm.app, name="slurm")
app.add_typer(teacher.app, name="teacher")
app.add_typer(model.app, name="model")

if __name__ == "__main__":
    app()
