"""Kill-and-resume equivalence, SIGTERM preemption (exit 75), atomic checkpoints, NaN stop."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from accel.trainers import checkpoint as ck  # noqa: E402

TOY = str(Path(__file__).with_name("trainer_toy.py"))
COMMON = ["max_steps=12", "save_steps=2", "per_device_train_batch_size=4", "gradient_accumulation_steps=2",
          "n_examples=40", "learning_rate=0.05", "warmup_ratio=0.2", "save_total_limit=3"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _run(out, *extra, check=True):
    p = subprocess.run([sys.executable, TOY, f"output_dir={out}", *COMMON, *extra], env=_env(),
                       capture_output=True, text=True, timeout=240)
    if check and p.returncode != 0:
        raise AssertionError(p.stderr[-3000:])
    return p


def _final(out: Path):
    w = load_file(str(out / "checkpoint-12" / "model.safetensors"))
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in last if "loss" in r]
    return w, {r["step"]: r["loss"] for r in last}


def _start_and_wait(out, until_ckpt: int, *extra):
    p = subprocess.Popen([sys.executable, TOY, f"output_dir={out}", *COMMON, "sleep_s=0.15", *extra], env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        last = ck.latest_checkpoint(out)
        if last is not None and ck.step_of(last) >= until_ckpt:
            return p
        if p.poll() is not None:
            raise AssertionError(f"run ended early ({p.returncode}): {p.stderr.read()[-3000:]}")
        time.sleep(0.05)
    p.kill()
    raise AssertionError("no checkpoint appeared in time")


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    _run(ref)
    p = _start_and_wait(cut, 4)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert ck.latest_checkpoint(cut) is not None and ck.step_of(ck.latest_checkpoint(cut)) < 12
    killed_at = ck.step_of(ck.latest_checkpoint(cut))
    _run(cut)  # resume=auto
    steps = [json.loads(x)["step"] for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps.count(1) == 1, "the second run restarted instead of resuming"
    assert killed_at + 1 in steps[steps.index(max(steps[:steps.index(killed_at) + 1])) + 1:]
    (w_ref, loss_ref), (w_cut, loss_cut) = _final(ref), _final(cut)
    assert w_ref.keys() == w_cut.keys()
    for k in w_ref:
        assert torch.allclose(w_ref[k], w_cut[k], atol=1e-6, rtol=0), k
    assert abs(loss_ref[12] - loss_cut[12]) <= 1e-6
    # the resumed run's logged losses agree step for step with the uninterrupted one
    for step, v in loss_cut.items():
        assert abs(loss_ref[step] - v) <= 1e-6, step


def test_sigterm_saves_and_exits_75_then_resume_finishes(tmp_path):
    out = tmp_path / "run"
    p = _start_and_wait(out, 2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 75, err[-2000:]
    info = json.loads((out / "preempted.json").read_text())
    assert ck.is_complete(out / f"checkpoint-{info['step']}")
    assert 2 <= info["step"] < 12
    _run(out)
    assert ck.step_of(ck.latest_checkpoint(out)) == 12
    assert not (out / "preempted.json").exists()


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    p = _run(out, "nan_at_step=5", check=False)
    assert p.returncode != 0
    assert "loss is nan at step 6" in p.stderr
    last = ck.latest_checkpoint(out)
    assert last is not None and ck.step_of(last) == 4
    assert "optimizer.pt" in os.listdir(last)
    assert not ck.staging_dir(out).exists() or not any(ck.staging_dir(out).iterdir())
