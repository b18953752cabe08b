"""Multi-process launch: re-exec under torchrun for ``--nproc N``, never twice.

When ``RANK`` is already set (srun + torchrun on SLURM, or a user's own torchrun) the
current process *is* a worker and trains in-process. Otherwise ``--nproc N > 1`` re-runs the
same command under ``python -m torch.distributed.run --standalone`` (gloo on CPU, NCCL on
GPU: accelerate picks the backend). torchrun reports any failed worker as exit 1; a
preempted run leaves ``preempted.json`` behind, which turns that into our requeue code 75.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def in_distributed_worker() -> bool:
    return "RANK" in os.environ


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """`argv` (a python -m / script invocation) under torchrun on this node."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *argv]


def relaunch(nproc: int, module_argv: list[str], run_dir: str | Path) -> int:
    """Run `module_argv` (e.g. ["-m", "accel.cli.main", "train", ...]) under torchrun; returns the exit code."""
    from accel.trainers.trainer import REQUEUE_EXIT_CODE

    t0 = time.time()
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    code = subprocess.call(torchrun_command(nproc, module_argv), env=env)
    marker = Path(run_dir) / "preempted.json"
    if code != 0 and marker.exists() and marker.stat().st_mtime >= t0:
        return REQUEUE_EXIT_CODE
    return code
