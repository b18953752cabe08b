"""Checkpoint directories: atomic publication, completeness, newest-complete lookup, rotation.

A checkpoint is written under ``RUN/.staging/checkpoint-N``, every file fsynced, a
``COMPLETE`` marker added, then renamed to ``RUN/checkpoint-N`` (one rename on one file
system is atomic). A crash mid-write therefore leaves only a staging dir, which resume
ignores and the next run deletes; the previous checkpoint is never touched.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from accel.core.files import default_modes, fsync_dir, fsync_tree  # noqa: F401 (fsync_dir: re-exported)

MARKER = "COMPLETE"
STAGING = ".staging"
_NAME = re.compile(r"^checkpoint-(\d+)$")



def is_complete(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


def step_of(path: str | Path) -> int:
    m = _NAME.match(Path(path).name)
    if not m:
        raise ValueError(f"{path} is not a checkpoint-N directory")
    return int(m.group(1))


def list_checkpoints(run_dir: str | Path, complete_only: bool = True) -> list[Path]:
    """checkpoint-N dirs of a run, oldest first (by step)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    out = [p for p in run_dir.iterdir() if p.is_dir() and _NAME.match(p.name)]
    if complete_only:
        out = [p for p in out if is_complete(p)]
    return sorted(out, key=step_of)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (what ``resume=auto`` picks), or None."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def staging_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / STAGING


def clear_staging(run_dir: str | Path) -> None:
    """Remove leftovers of a save that crashed mid-write."""
    shutil.rmtree(staging_dir(run_dir), ignore_errors=True)


def publish(staged: Path, run_dir: str | Path, step: int) -> Path:
    """fsync `staged`, mark it complete and rename it to RUN/checkpoint-<step> atomically."""
    run_dir = Path(run_dir)
    (staged / MARKER).write_text(json.dumps({"step": step, "time": time.time()}))
    default_modes(staged)  # group-readable like any file (safetensors writes 0600)
    fsync_tree(staged)
    dst = run_dir / f"checkpoint-{step}"
    if dst.exists():  # re-saving the same step (e.g. preempted exactly at a save point)
        old = run_dir / f".old-checkpoint-{step}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dst, old)
        os.rename(staged, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staged, dst)
    fsync_dir(run_dir)
    try:
        staged.parent.rmdir()  # the staging dir, once empty
    except OSError:
        pass
    return dst


def rotate(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints (and incomplete ones older than them)."""
    ckpts = list_checkpoints(run_dir)
    removed = []
    for p in ckpts[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed
