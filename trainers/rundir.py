"""The run directory: what was run, with which code, so a result can be reproduced.

``config.yaml`` is the fully resolved config with a top-level ``recipe:`` line, so
``accel train RECIPE --config RUN/config.yaml`` reruns it exactly; ``run_info.json`` holds
package versions (read from metadata, no imports), the git SHA of the accel source tree
(and whether it was dirty), the command line, host and start time.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml

from accel.core.files import write_atomic  # noqa: F401 (re-exported: callers import it from here)
from accel.trainers.runguard import check_recipe, lock_run_dir

PACKAGES = ("accel", "torch", "transformers", "accelerate", "peft", "deepspeed", "datasets", "triton",
            "safetensors", "tokenizers", "numpy", "wandb")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info(path: str | Path | None = None) -> dict[str, object]:
    """SHA and dirty flag of the git checkout holding `path` (the accel sources by default)."""
    path = Path(path or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return {"sha": None, "dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
        return {"sha": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0



def prepare_run_dir(cfg, recipe: str, output_dir: str | Path | None = None) -> Path:
    """Create the run dir and write config.yaml (with `recipe:`) and run_info.json (rank 0 only).

    Refuses (RunDirError) a directory holding another recipe's run or another live run.
    On resume the previous config.yaml is kept as config.prev.yaml when it differs, so a changed
    hyper-parameter between preemptions is visible rather than silent.
    """
    run_dir = Path(output_dir or cfg.output_dir).expanduser()
    check_recipe(run_dir, recipe)  # before anything is written: another recipe's run stays intact
    run_dir.mkdir(parents=True, exist_ok=True)
    if not is_rank0():
        return run_dir
    lock_run_dir(run_dir)
    text = yaml.safe_dump({"recipe": recipe, **dataclasses.asdict(cfg)}, sort_keys=False)
    cfg_file = run_dir / "config.yaml"
    if cfg_file.exists() and cfg_file.read_text() != text:
        write_atomic(run_dir / "config.prev.yaml", cfg_file.read_text())
    write_atomic(cfg_file, text)
    info = {
        "recipe": recipe,
        "versions": package_versions(),
        "git": git_info(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "argv": sys.argv,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_atomic(run_dir / "run_info.json", json.dumps(info, indent=1))
    return run_dir
