"""Guarding a run directory: one recipe per directory, one writer at a time, a finished run stays finished.

A run directory is the only copy of hours of work, so every check here runs before anything in
it is written:

- ``config.yaml`` records the recipe; a command for another recipe (or an output directory
  that is an exported checkpoint / model directory) is refused, so a typo in ``--output``
  cannot overwrite a finished run's config and make it unexportable;
- ``RUN/.lock`` is held (``flock``) by the process that trains there, so a second run started
  into the same directory fails at once instead of interleaving checkpoints; the kernel drops
  the lock when the holder dies, even by ``kill -9``, so a stale lock never blocks a resume;
- ``RUN/finished.json`` is written when a run completed; running the same command again says
  so and exits 0 instead of resuming and redoing the post-training work, unless continuing is
  asked for explicitly.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

import yaml

from accel.core.files import write_atomic
from accel.trainers.checkpoint import latest_checkpoint, step_of
from accel.trainers.config import ConfigError

FINISHED = "finished.json"
LOCK = ".lock"

_held: dict[str, int] = {}
"""Locks this process holds (resolved run dir -> fd); flock is per open file, so re-entry must reuse it."""


class RunDirError(ConfigError):
    """The output directory cannot take this run; the message names the fix."""


def run_recipe_of(run_dir: str | Path) -> str | None:
    """The recipe recorded in RUN/config.yaml, or None when there is no readable config.yaml."""
    cfg = Path(run_dir).expanduser() / "config.yaml"
    try:
        data = yaml.safe_load(cfg.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return str(data["recipe"]) if isinstance(data, dict) and data.get("recipe") else None


def check_recipe(run_dir: str | Path, recipe: str, command: str | None = None) -> None:
    """Refuse a directory that holds another recipe's run, or an exported checkpoint / model."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunDirError(f"--output {run_dir} is a file; pass a directory for the run")
    have = run_recipe_of(run_dir)
    cmd = command or f"accel train {recipe}"
    if have is not None and have != recipe:
        raise RunDirError(f"{run_dir} holds a {have} run; `{cmd}` would overwrite it. Choose another --output "
                          f"(the {have} run is untouched: `accel export {run_dir} --out DIR`)")
    if have is None and (run_dir / "config.json").is_file():
        raise RunDirError(f"{run_dir} is a model or exported checkpoint directory (it has config.json), not a run "
                          f"directory; choose another --output")


def finished_info(run_dir: str | Path) -> dict | None:
    """RUN/finished.json's content when the run completed, else None."""
    try:
        return json.loads((Path(run_dir).expanduser() / FINISHED).read_text())
    except (OSError, ValueError):
        return None


def asks_for_more_steps(cfg) -> bool:
    """A finished run whose config now asks for more optimizer steps than its newest checkpoint holds
    (max_steps raised, e.g. a resubmitted SLURM job with a longer budget): it trains on by itself, as
    `--continue` would; the same config again stays finished."""
    max_steps = int(getattr(cfg, "max_steps", 0) or 0)
    if max_steps <= 0 or finished_info(cfg.output_dir) is None:
        return False
    ckpt = latest_checkpoint(Path(cfg.output_dir).expanduser())
    return ckpt is not None and step_of(ckpt) < max_steps


def mark_finished(run_dir: str | Path, recipe: str, **extra) -> None:
    """Record that the run completed (rank 0, after its final artifacts are written)."""
    info = {"recipe": recipe, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    write_atomic(Path(run_dir).expanduser() / FINISHED, json.dumps(info, indent=1))


def clear_finished(run_dir: str | Path) -> None:
    """Continuing a finished run: it is unfinished again until this run completes."""
    (Path(run_dir).expanduser() / FINISHED).unlink(missing_ok=True)


def lock_run_dir(run_dir: str | Path) -> None:
    """Take RUN/.lock for this process (no-op if already held here); RunDirError if another holds it."""
    run_dir = Path(run_dir).expanduser()
    key = str(run_dir.resolve())
    if key in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            who = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            who = {}
        os.close(fd)
        by = f" (pid {who.get('pid')} on {who.get('host')}, since {who.get('since')})" if who else ""
        raise RunDirError(f"{run_dir} is in use by another accel run{by}; wait for it to finish or choose "
                          f"another --output") from None
    except OSError:  # a file system without flock (some NFS mounts): go on unguarded rather than refuse
        os.close(fd)
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode(), 0)
    _held[key] = fd


def unlock_run_dir(run_dir: str | Path) -> None:
    """Release the lock taken by `lock_run_dir` (process exit releases it too)."""
    fd = _held.pop(str(Path(run_dir).expanduser().resolve()), None)
    if fd is not None:
        os.close(fd)


def write_final_metrics(run_dir: str | Path, metrics: dict) -> None:
    """Append the run's `final` row to metrics.jsonl, dropping an older one (a continued run's).

    A run has one final result; two `final` rows would make "the run's metrics" ambiguous.
    """
    path = Path(run_dir).expanduser() / "metrics.jsonl"
    keep = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("final"):
                    continue
            except (ValueError, AttributeError):
                pass
            keep.append(line)
    keep.append(json.dumps({"final": True, **metrics}))
    write_atomic(path, "\n".join(keep) + "\n")
