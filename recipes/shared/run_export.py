"""Exporting a run whose trained module sits beside a frozen backbone the checkpoint only references
(Learn2PD's filter, the joint sampler's layer; the drafts' RUN/final is read the same way).

The run holds the module's weights and a JSON of its settings (with ``backbone``); the checkpoint
holds the weights, the recipe's `Spec`, the run's metrics when there are any, and the reference.
"""
from __future__ import annotations

import json
from pathlib import Path

from accel.decoding.checkpoint import CheckpointError, save_checkpoint


def read_run(run_dir, weights: str, settings: str, recipe: str, missing: str) -> tuple[Path, dict]:
    """(run dir, its settings JSON) once RUN/`weights` and RUN/`settings` exist, else a CheckpointError
    naming what is `missing` and how to finish the run (training resumes)."""
    run = Path(run_dir).expanduser()
    if not (run / settings).exists() or not (run / weights).exists():
        raise CheckpointError(f"{run} has no {missing} ({weights}); finish the run with "
                              f"`accel train {recipe} --output {run}` (it resumes)")
    return run, json.loads((run / settings).read_text())


def accel_only(format: str | None, recipe: str) -> None:
    """CheckpointError unless `format` is the accel format (the default)."""
    if format not in (None, "accel"):
        raise CheckpointError(f"--format {format}: {recipe} exports only the accel format")


def save_referencing(out_dir, recipe: str, run: Path, settings: dict, spec, weights: str, metrics: str) -> Path:
    """The checkpoint: RUN/`weights`, the spec, RUN/`metrics` when the run wrote it, and the settings'
    backbone as a reference (not copied)."""
    from safetensors.torch import load_file
    extra = {metrics: (run / metrics).read_text()} if (run / metrics).exists() else {}
    return save_checkpoint(out_dir, {"recipe": recipe, "backbone": settings["backbone"]}, spec=spec,
                           tensors=load_file(str(run / weights)), extra_files=extra)
