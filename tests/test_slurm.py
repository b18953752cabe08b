"""`accel slurm`: rendering and submission logic (no cluster), then real jobs on the local cluster.

The `slurm`-marked tests need the one-node cluster of `scripts/slurm_local.sh` and skip with
the reason when it is not up. They submit `accel train sft` through `accel slurm submit`:
one job runs to completion; one is requeued from outside (`scontrol requeue`, i.e. a
preemption) and then warned with SIGUSR1 (what `--signal=B:USR1@120` delivers before the time
limit), and must resume from its checkpoints both times, not restart from step 0.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accel.cli.main import app
from accel.trainers import slurm

runner = CliRunner()
RECIPE = "sft"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# --- rendering (no cluster needed) ---------------------------------------------------------

def test_render_has_preemption_safe_directives(tmp_path):
    out = tmp_path / "run"
    r = invoke("slurm", "render", RECIPE, "--output", out, "max_steps=7", "--nodes", 2, "--gpus-per-node", 4,
               "--partition", "gpu", "--time", "01:30:00", "--sbatch=--account=proj", "seed=3")
    assert r.exit_code == 0, r.output
    s = r.output
    directives = re.findall(r"^#SBATCH (\S+)$", s, re.M)
    for d in ["--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=4", "--cpus-per-task=4", "--time=01:30:00",
              "--partition=gpu", f"--output={out}/slurm-%j.out", "--open-mode=append", "--requeue",
              "--signal=B:USR1@120", "--account=proj", f"--job-name=accel-{RECIPE}", f"--chdir={os.getcwd()}"]:
        assert d in directives, (d, directives)
    # Directives must precede the first command, or sbatch ignores them.
    first_cmd = min(i for i, ln in enumerate(s.splitlines()) if ln and not ln.startswith("#"))
    assert all(i < first_cmd for i, ln in enumerate(s.splitlines()) if ln.startswith("#SBATCH"))
    assert "NPROC_PER_NODE=4" in s
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1' in s
    assert "--rdzv-backend=c10d" in s and '--rdzv-endpoint="$HEAD_NODE:$RDZV_PORT"' in s
    assert "SIGUSR1" in s.split("--signals-to-handle=")[1].split()[0]  # torchrun must relay, not die
    assert f"-m accel.cli.main train {RECIPE} --output {out} max_steps=7 seed=3" in s
    assert 'scontrol requeue "$SLURM_JOB_ID"' in s and "REQUEUE_EXIT=75" in s
    assert "trap on_usr1 USR1" in s
    subprocess.run(["bash", "-n"], input=s, text=True, check=True)


def test_render_cpu_defaults(tmp_path):
    r = invoke("slurm", "render", RECIPE, "--output", tmp_path, "--config", _yaml(tmp_path, "max_steps: 3\n"))
    assert r.exit_code == 0, r.output
    assert "#SBATCH --gpus-per-node" not in r.output and "#SBATCH --partition" not in r.output
    assert "NPROC_PER_NODE=1" in r.output and "#SBATCH --cpus-per-task=1" in r.output
    assert f"--config {tmp_path / 'c.yaml'}" in r.output


def _yaml(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("args, message", [
    ([RECIPE, "max_stepz=5"], "unknown config key 'max_stepz'"),
    ([RECIPE, "max_steps=many"], "max_steps: expected an int"),
    (["learnpd"], "unknown recipe 'learnpd'; did you mean learn2pd?"),
    (["future-recipe"], "not built yet"),
    ([RECIPE, "--time", "abc"], "--time 'abc' is not a SLURM time"),
    ([RECIPE, "--time", "2"], "leaves no room before the 120s preemption warning"),
    ([RECIPE, "--nodes", "0"], "--nodes 0: must be >= 1"),
    ([RECIPE, "--sbatch", "account=x"], "one sbatch option per flag"),
    ([RECIPE, "--config", "/nonexistent/c.yaml"], "--config /nonexistent/c.yaml: no such file"),
])
def test_render_rejects_bad_input_before_rendering(args, message, monkeypatch):
    import accel.recipes as recipes
    monkeypatch.setitem(recipes.PLANNED, "future-recipe", "train")  # every real recipe is built now
    r = invoke("slurm", "render", *args)
    assert r.exit_code == 2
    assert message in r.output
    assert "#SBATCH" not in r.output


def test_distill_recipes_run_through_accel_distill(tmp_path):
    spec = slurm.JobSpec(recipe="d2f", group="distill", output=tmp_path, config=tmp_path / "c.yaml",
                         overrides=["lora_r=8"])
    assert slurm.trainer_argv(spec) == ["-m", "accel.cli.main", "distill", "d2f", "--output", str(tmp_path),
                                        "--config", str(tmp_path / "c.yaml"), "lora_r=8"]
    assert "# accel run on SLURM: accel distill d2f --output" in slurm.render(spec)


def test_output_dir_override_becomes_the_run_dir(tmp_path):
    import accel.recipes as recipes
    spec = slurm.prepare(recipes.get(RECIPE), overrides=[f"output_dir={tmp_path}/r", "max_steps=2"])
    assert spec.output == tmp_path / "r" and spec.overrides == ["max_steps=2"]


@pytest.mark.parametrize("value, seconds", [("30", 1800), ("5:30", 330), ("02:00:00", 7200), ("1-12", 129600),
                                            ("1-00:30", 88200), ("2-01:02:03", 176523)])
def test_time_to_seconds(value, seconds):
    assert slurm.time_to_seconds(value) == seconds


# --- submission logic against stand-in SLURM commands (no cluster needed) --------------------

def _fake_bin(tmp_path, **scripts):
    """A PATH holding only the given shell scripts (and bash), standing in for SLURM's CLI."""
    d = tmp_path / "bin"
    d.mkdir()
    for name, body in scripts.items():
        p = d / name
        p.write_text("#!/bin/bash\n" + body)
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return d


def test_submit_without_sbatch_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(_fake_bin(tmp_path)))
    r = invoke("slurm", "submit", RECIPE, "--output", tmp_path / "run")
    assert r.exit_code == 2
    assert "`sbatch` not found on PATH" in r.output and "slurm_local.sh" in r.output


def test_submit_reports_unreachable_controller(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(_fake_bin(tmp_path, sbatch=(
        'echo "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)" >&2\n'
        "exit 1\n"), scontrol="exit 0\n")))
    r = invoke("slurm", "submit", RECIPE, "--output", tmp_path / "run")
    assert r.exit_code == 2
    assert "cannot reach the SLURM controller" in r.output


def test_submit_fails_fast_when_the_controller_is_down(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(_fake_bin(tmp_path, sbatch="exit 99\n", squeue="exit 1\n", scontrol=(
        'echo "Slurmctld(primary) at vm is DOWN"\nexit 1\n'))))
    r = invoke("slurm", "submit", RECIPE, "--output", tmp_path / "run")
    assert r.exit_code == 2 and "cannot reach the SLURM controller (Slurmctld(primary) at vm is DOWN)" in r.output


def test_submit_records_job_and_refuses_a_second_active_job(tmp_path, monkeypatch):
    log = tmp_path / "sbatch.args"
    monkeypatch.setenv("PATH", str(_fake_bin(
        tmp_path,
        sbatch=f'echo "$@" >> {log}\necho "4242;cluster"\n',
        squeue='[ "$3" = 4242 ] && echo RUNNING\nexit 0\n',
        scontrol='[ "$1" = ping ] && exit 0\nexit 1\n')))
    run = tmp_path / "run"
    r = invoke("slurm", "submit", RECIPE, "--output", run, "max_steps=3")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "4242"
    assert log.read_text().split() == ["--parsable", str(run / slurm.SCRIPT_NAME)]
    assert "max_steps=3" in (run / slurm.SCRIPT_NAME).read_text()
    assert slurm.job_ids(run) == ["4242"]
    r = invoke("slurm", "submit", RECIPE, "--output", run)
    assert r.exit_code == 2 and "job 4242 is still RUNNING" in r.output and "scancel 4242" in r.output
    r = invoke("slurm", "status", run)
    assert r.exit_code == 0 and "job 4242: RUNNING" in r.output


# --- real jobs on the local cluster ------------------------------------------------------------

def _cluster_skip_reason() -> str | None:
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo) on PATH; start the local cluster with `bash scripts/slurm_local.sh`"
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out; is slurmctld running? (bash scripts/slurm_local.sh)"
    states = p.stdout.split()
    if p.returncode != 0 or not any(s.rstrip("*~") in ("idle", "mixed", "allocated") for s in states):
        return f"local SLURM cluster not up (sinfo: {(p.stderr or p.stdout).strip()[:120] or 'no nodes'}); " \
               "run `bash scripts/slurm_local.sh`"
    try:
        import accel.recipes.sft.config  # noqa: F401
    except ImportError:
        return "recipe sft (the SLURM test workload) is not built yet"
    return None


_SKIP = _cluster_skip_reason()
cluster = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")
TINY = ["backbone=random:dllm", "n_per_task=8", "per_device_train_batch_size=4", "threads=1", "logging_steps=1"]
"""A tiny random-init dLLM: ~10 steps/s here, most of a job is interpreter and import start-up."""


def _sh(*cmd) -> str:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60).stdout


def _state(job: str) -> str:
    return slurm.job_state(job) or "GONE"


def _wait(pred, what: str, timeout: float, job: str, run: Path, poll: float = 0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(poll)
    log = "".join(p.read_text() for p in run.glob("slurm-*.out"))[-3000:]
    _sh("scancel", job)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; job {job} is {_state(job)}; log tail:\n{log}")


def _start_now(job: str):
    """A requeued job waits 120 s (SLURM's requeue BeginTime); the test need not.

    But only once slurmd has finished the previous run's steps: started earlier, slurmd
    refuses the launch ("job credential revoked") and the job ends FAILED. The 120 s delay
    is SLURM's own guard against exactly that.
    """
    if subprocess.run(["pgrep", "-f", rf"^slurmstepd: \[{job}\."], capture_output=True).returncode == 0:
        return  # the old run is still being cleaned up; try again at the next poll
    _sh("scontrol", "update", f"jobid={job}", "StartTime=now")


def _steps(run: Path) -> list[int]:
    p = run / "metrics.jsonl"
    if not p.exists():
        return []
    out = []
    for ln in p.read_text().splitlines():
        try:
            rec = json.loads(ln)
        except ValueError:
            continue
        if "step" in rec and "loss" in rec:
            out.append(int(rec["step"]))
    return out


def _submit(run: Path, *overrides) -> str:
    r = invoke("slurm", "submit", "sft", "--output", run, "--time", "10", "--cpus-per-task", 1, *TINY, *overrides)
    assert r.exit_code == 0, r.output
    job = r.stdout.strip()
    assert job.isdigit(), r.output
    return job


def _done(job):
    return lambda: _state(job) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                                   "GONE")


def _log(run: Path, job: str) -> str:
    return (run / f"slurm-{job}.out").read_text()


@pytest.mark.slurm
@cluster
def test_submitted_job_trains_and_leaves_its_checkpoint(tmp_path):
    from accel.trainers.checkpoint import latest_checkpoint, step_of
    run = tmp_path / "run"
    job = _submit(run, "max_steps=6", "save_steps=3")
    _wait(_done(job), "the job to finish", 120, job, run)
    log = _log(run, job)
    assert _state(job) in ("COMPLETED", "GONE"), log[-2000:]
    assert "trainer step exited with status 0" in log, log[-2000:]
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and step_of(ckpt) == 6
    assert _steps(run)[-1] == 6
    r = invoke("slurm", "status", run)
    assert f"job {job}: COMPLETED" in r.output and "checkpoint-6" in r.output

    # Resubmitting the same run dir (here with a longer budget) resumes it: steps 7-9 only.
    job2 = _submit(run, "max_steps=9", "save_steps=3")
    _wait(_done(job2), "the resubmitted job to finish", 120, job2, run)
    assert "trainer step exited with status 0" in _log(run, job2), _log(run, job2)[-2000:]
    assert step_of(latest_checkpoint(run)) == 9
    assert _steps(run) == list(range(1, 10)), _steps(run)
    assert slurm.job_ids(run) == [job, job2]


@pytest.mark.slurm
@cluster
def test_requeued_job_resumes_from_its_checkpoint(tmp_path):
    """Preempted twice: `scontrol requeue` from outside, then the SIGUSR1 time-limit warning."""
    from accel.trainers.checkpoint import latest_checkpoint, step_of
    run = tmp_path / "run"
    N = 600  # long enough that the second preemption lands before the tiny job ends (tens of steps/s)
    job = _submit(run, f"max_steps={N}", "save_steps=10")

    # 1. External requeue once a checkpoint exists: SIGTERM -> checkpoint -> SLURM requeues.
    _wait(lambda: latest_checkpoint(run) is not None, "a first checkpoint", 120, job, run)
    _sh("scontrol", "requeue", job)
    resumes = [_start_now_until(job, run, "(restart 1)")]
    # 2. The time-limit warning (what --signal=B:USR1@120 delivers to the batch shell): the
    #    trainer checkpoints and exits 75, and the script requeues the job itself.
    first = step_of(latest_checkpoint(run))
    _wait(lambda: step_of(latest_checkpoint(run)) > first, "a checkpoint after the requeue", 120, job, run)
    _sh("scancel", "--batch", "--signal=USR1", job)
    resumes.append(_start_now_until(job, run, "(restart 2)"))
    _wait(_done(job), "the job to finish", 150, job, run)

    log = _log(run, job)
    assert "requeueing job" in log, log[-3000:]  # the script's own requeue after exit 75
    assert "trainer step exited with status 0" in log, log[-3000:]
    assert step_of(latest_checkpoint(run)) == N
    steps = _steps(run)
    assert steps[-1] == N
    # Resumed, not restarted: each restart's first step follows the checkpoint it found, and
    # every step was trained exactly once.
    for ckpt_step, n_logged in resumes:
        assert ckpt_step > 0 and n_logged < len(steps) and steps[n_logged] == ckpt_step + 1, (resumes, steps)
    assert steps == list(range(1, N + 1)), steps
    assert re.search(r"Restarts=2\b", _sh("scontrol", "show", "job", job)), _sh("scontrol", "show", "job", job)


def _start_now_until(job: str, run: Path, marker: str, timeout: float = 120) -> tuple[int, int]:
    """Skip SLURM's 120 s requeue delay until `marker` shows up in the job's log.

    Returns (newest checkpoint step, steps logged so far) as the restarted job begins (its
    trainer needs seconds to import before it could log anything).
    """
    from accel.trainers.checkpoint import latest_checkpoint, step_of
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if marker in _log(run, job):
            ckpt = latest_checkpoint(run)
            return (step_of(ckpt) if ckpt else 0), len(_steps(run))
        if _state(job) == "PENDING":
            _start_now(job)
        time.sleep(1.0)
    log = _log(run, job)[-3000:]
    _sh("scancel", job)
    pytest.fail(f"job {job} did not restart ({marker!r}) within {timeout}s; state {_state(job)}; log tail:\n{log}")
