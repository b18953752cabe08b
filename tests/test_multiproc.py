"""2 CPU processes under torchrun (DDP, DeepSpeed ZeRO-2): 2 procs x batch b == 1 proc x batch 2b."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

TOY = str(Path(__file__).with_name("trainer_toy.py"))
ARGS = ["max_steps=4", "save_steps=4", "noise=0", "n_examples=32", "learning_rate=0.05"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


# A torchrun worker can abort in torch's C++ runtime with this line (std::terminate, exit -6) and no
# Python error of ours: seen in one of 34 CI runs of the DDP test, never in 30+ repeats under load
# here. Such a start is retried once, in a fresh directory; any other failure fails the test.
RUNTIME_ABORT = "terminate called without an active exception"


def _run(out, nproc, batch, *extra):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    for attempt in (0, 1):
        run_dir = Path(out) if attempt == 0 else Path(f"{out}-retry")
        cmd = (launcher if nproc > 1 else [sys.executable]) + [TOY, f"output_dir={run_dir}", *ARGS,
                                                               f"per_device_train_batch_size={batch}", *extra]
        p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)  # first use JIT-builds DeepSpeed's CPU shm op (cached afterwards)
        if p.returncode == 0 or attempt == 1 or nproc == 1 or RUNTIME_ABORT not in p.stderr:
            break
    assert p.returncode == 0, p.stderr[-3000:]
    return load_file(str(run_dir / "checkpoint-4" / "model.safetensors"))


def _close(a, b):
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_ddp_two_procs_match_one_proc_double_batch(tmp_path):
    _close(_run(tmp_path / "one", 1, 8), _run(tmp_path / "two", 2, 4))


def test_deepspeed_zero2_two_procs_match_one_proc(tmp_path):
    """The first run on a machine JIT-builds DeepSpeed's CPU shm-comm op (cached in ~/.cache/torch_extensions)."""
    pytest.importorskip("deepspeed")
    _close(_run(tmp_path / "one", 1, 8), _run(tmp_path / "two", 2, 4, "deepspeed=zero2"))
