"""SLURM batch jobs for accel runs: validate, render an sbatch script, submit, report status.

The CLI (`accel slurm`) is a thin shell over this module. Nothing here imports torch: a
typo'd config key must fail in well under two seconds, before anything waits in a queue.

Preemption protocol (the reason the script looks the way it does):

* ``#SBATCH --signal=B:USR1@120`` sends SIGUSR1 to the **batch shell only**, 120 s before the
  time limit. Without ``B:`` SLURM would signal every process of the job step, including
  torchrun, whose default SIGUSR1 action is to die; its workers would then be killed
  mid-checkpoint, and the batch shell would never learn that a requeue is wanted. With ``B:``
  the shell traps the signal, remembers it and forwards it to srun, which relays it to the
  step; torchrun is started with ``--signals-to-handle ...,SIGUSR1`` so it passes the signal
  on to its workers and waits for them (``--shutdown-timeout``) instead of dying.
* The trainer saves a checkpoint at the next step boundary and exits 75 ("requeue me").
  torchrun reports any non-zero worker exit as its own exit 1, so the shell requeues when the
  step exits 75 (no torchrun in between) *or* when it received SIGUSR1 and the step did not
  finish cleanly. ``scontrol requeue`` puts the same job id back in the queue; the log is
  appended (``--open-mode=append``) and ``resume=auto`` continues from the newest checkpoint.
* An external ``scontrol requeue`` / preemption sends SIGTERM to every process (the trainer
  checkpoints and exits; ``KillWait`` is the budget) and SLURM requeues by itself.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from accel.core.errors import UserError
from accel.core.files import write_atomic
from accel.trainers.checkpoint import latest_checkpoint
from accel.trainers.loading import load_config

REQUEUE_EXIT = 75
"""Exit status with which the trainer asks to be requeued (EX_TEMPFAIL)."""
SCRIPT_NAME = "slurm.sbatch"
JOBS_FILE = "slurm.jobs"
"""One line per submission in the run dir: ``JOBID<TAB>ISO time`` (newest last)."""
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


class SlurmError(UserError):
    """A SLURM problem the user can fix (missing sbatch, unreachable controller, bad flag)."""


@dataclasses.dataclass
class JobSpec:
    """Everything a rendered script depends on; paths are absolute once `prepare()` made it."""
    recipe: str
    group: str
    """CLI group that runs the recipe: 'train' or 'distill'."""
    output: Path
    config: Path | None = None
    overrides: list[str] = dataclasses.field(default_factory=list)
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    time: str = "04:00:00"
    partition: str | None = None
    job_name: str | None = None
    sbatch_args: list[str] = dataclasses.field(default_factory=list)
    """Extra sbatch options, one per #SBATCH line (e.g. --account=proj, --qos=high)."""
    python: str = dataclasses.field(default_factory=lambda: sys.executable)
    workdir: Path = dataclasses.field(default_factory=Path.cwd)
    signal_lead_s: int = 120
    rdzv_port: int | None = None
    """Fixed rendezvous port; None derives one from the job id (20000-39999)."""
    resume: str = "auto"
    """The config's resume policy (informational: `never` makes a requeued job restart)."""

    @property
    def nproc_per_node(self) -> int:
        return self.gpus_per_node if self.gpus_per_node > 0 else 1


def time_to_seconds(value: str) -> int:
    """Parse a SLURM --time (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) to seconds, or raise SlurmError."""
    m = _TIME.match(value.strip())
    if not m:
        raise SlurmError(f"--time {value!r} is not a SLURM time; use e.g. 30 (minutes), 02:00:00 or 1-12:00:00")
    days, a, b, c = m.groups()
    if days is not None:  # D-H[:M[:S]]
        h, mi, s = int(a), int(b or 0), int(c or 0)
        return ((int(days) * 24 + h) * 60 + mi) * 60 + s
    if b is None:  # minutes
        return int(a) * 60
    if c is None:  # M:S
        return int(a) * 60 + int(b)
    return (int(a) * 60 + int(b)) * 60 + int(c)


def load_recipe_config(recipe, config: Path | None, overrides: list[str]):
    """The resolved recipe config (defaults < YAML < overrides); raises ConfigError on bad keys."""
    return load_config(recipe.Config, config, overrides, recipe=recipe.name)


def prepare(recipe, *, output: str | Path | None = None, config: str | Path | None = None,
            overrides: list[str] | None = None, **options) -> JobSpec:
    """Validate everything a job needs (recipe, config keys, flags) and return its JobSpec.

    `recipe` is the registry's `Recipe` (the CLI looks the name up in `accel.recipes`; the
    trainers layer sits below the recipes and never imports them).

    The output dir is --output, else the config's ``output_dir``; relative paths are taken
    from the current directory, as a local run would.
    """
    overrides = list(overrides or [])
    cfg_path = Path(config).expanduser().resolve() if config else None
    cfg = load_recipe_config(recipe, cfg_path, overrides)
    out_dir = Path(output or cfg.output_dir).expanduser().resolve()
    # output_dir travels as --output; drop it from the overrides so the two cannot disagree.
    overrides = [o for o in overrides if o.split("=", 1)[0].strip().lstrip("-").replace("-", "_") != "output_dir"]
    spec = JobSpec(recipe=recipe.name, group=recipe.group, output=out_dir, config=cfg_path,
                   overrides=overrides, resume=str(getattr(cfg, "resume", "auto")),
                   **{k: v for k, v in options.items() if v is not None})
    check(spec)
    return spec


def check(spec: JobSpec) -> None:
    """Flag-level validation (ranges, formats) with one-line, fix-naming errors."""
    if spec.nodes < 1:
        raise SlurmError(f"--nodes {spec.nodes}: must be >= 1")
    if spec.gpus_per_node < 0:
        raise SlurmError(f"--gpus-per-node {spec.gpus_per_node}: must be >= 0 (0 = CPU job)")
    if spec.cpus_per_task is not None and spec.cpus_per_task < 1:
        raise SlurmError(f"--cpus-per-task {spec.cpus_per_task}: must be >= 1")
    limit = time_to_seconds(spec.time)
    if limit <= spec.signal_lead_s:
        raise SlurmError(f"--time {spec.time} leaves no room before the {spec.signal_lead_s}s preemption "
                         f"warning; ask for more than {spec.signal_lead_s // 60} minutes")
    for a in spec.sbatch_args:
        if not a.startswith("-") or "\n" in a:
            raise SlurmError(f"--sbatch {a!r}: pass one sbatch option per flag, e.g. --sbatch=--account=myproj")
    for name, val in (("--partition", spec.partition), ("--job-name", spec.job_name)):
        if val is not None and (not val or any(c.isspace() for c in val)):
            raise SlurmError(f"{name} {val!r}: must be a non-empty word without spaces")


def trainer_argv(spec: JobSpec) -> list[str]:
    """What torchrun starts on every worker: ``-m accel.cli.main <group> RECIPE --output ...``."""
    argv = ["-m", "accel.cli.main", spec.group, spec.recipe, "--output", str(spec.output)]
    if spec.config is not None:
        argv += ["--config", str(spec.config)]
    return argv + list(spec.overrides)


def render(spec: JobSpec, argv: list[str] | None = None) -> str:
    """A complete sbatch script for `spec` (argv: what torchrun runs; default `trainer_argv`)."""
    q = shlex.quote
    out = spec.output
    cpus = spec.cpus_per_task or spec.nproc_per_node
    name = spec.job_name or f"accel-{spec.recipe}"
    cmd = " ".join(q(a) for a in (argv if argv is not None else trainer_argv(spec)))
    accel_cmd = " ".join(["accel", spec.group, spec.recipe] + [q(a) for a in trainer_argv(spec)[4:]])
    sb = [f"--job-name={name}", f"--nodes={spec.nodes}", "--ntasks-per-node=1", f"--cpus-per-task={cpus}"]
    if spec.gpus_per_node:
        sb.append(f"--gpus-per-node={spec.gpus_per_node}")
    sb.append(f"--time={spec.time}")
    if spec.partition:
        sb.append(f"--partition={spec.partition}")
    sb += [f"--chdir={spec.workdir}", f"--output={out}/slurm-%j.out", "--open-mode=append", "--requeue",
           f"--signal=B:USR1@{spec.signal_lead_s}"]
    sb += list(spec.sbatch_args)
    port = str(spec.rdzv_port) if spec.rdzv_port else "$((20000 + SLURM_JOB_ID % 20000))"
    shutdown = max(30, spec.signal_lead_s - 20)
    lines = [
        "#!/bin/bash",
        f"# accel run on SLURM: {accel_cmd}",
        f"# Submit: sbatch {q(str(out / SCRIPT_NAME))}   (or: accel slurm submit {spec.recipe} --output {q(str(out))} ...)",
        "# Preemption: SIGUSR1 reaches this shell (B:) 120 s before the limit; it is forwarded to the",
        f"# trainer, which checkpoints and exits {REQUEUE_EXIT}; the job is then requeued and resumes",
        "# from the newest checkpoint (resume=auto). An external `scontrol requeue` resumes the same way.",
        *[f"#SBATCH {a}" for a in sb],
        "set -uo pipefail",
        "",
        f"RUN_DIR={q(str(out))}",
        f"PYTHON=${{ACCEL_PYTHON:-{q(spec.python)}}}",
        f"REQUEUE_EXIT={REQUEUE_EXIT}",
        "NNODES=${SLURM_JOB_NUM_NODES:-1}",
        f"NPROC_PER_NODE={spec.nproc_per_node}",
        'HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
        f"RDZV_PORT=${{ACCEL_RDZV_PORT:-{port}}}",
        "# srun >= 22.11 no longer inherits --cpus-per-task from sbatch.",
        "export SRUN_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-1}",
        'mkdir -p "$RUN_DIR"',
        'log() { echo "[accel-slurm $(date +%H:%M:%S)] $*"; }',
        'log "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST;'
        ' $NNODES node(s) x $NPROC_PER_NODE proc(s); rendezvous $HEAD_NODE:$RDZV_PORT"',
        "",
        'got_signal=""; step_pid=""',
        'on_usr1() { got_signal=USR1; log "SIGUSR1 (time limit/preemption near): asking the trainer to checkpoint";'
        ' [ -n "$step_pid" ] && kill -USR1 "$step_pid" 2>/dev/null; }',
        '# SIGTERM (scancel, scontrol requeue, time limit) also reaches srun and the trainer directly:',
        '# only note it and keep waiting so the trainer\'s last lines land in this log.',
        'on_term() { [ -z "$got_signal" ] && got_signal=TERM; log "SIGTERM: waiting for the trainer to stop"; }',
        "trap on_usr1 USR1",
        "trap on_term TERM",
        "",
        'srun --nodes="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \\',
        '  "$PYTHON" -m torch.distributed.run \\',
        '    --nnodes="$NNODES" --nproc-per-node="$NPROC_PER_NODE" \\',
        '    --rdzv-backend=c10d --rdzv-endpoint="$HEAD_NODE:$RDZV_PORT" --rdzv-id="$SLURM_JOB_ID" \\',
        f"    --signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 --shutdown-timeout={shutdown} \\",
        f"    {cmd} &",
        "step_pid=$!",
        "# `wait` returns early (status > 128) whenever a trapped signal arrives: wait again.",
        "while :; do",
        '  wait "$step_pid"; rc=$?',
        '  if [ "$rc" -gt 128 ] && kill -0 "$step_pid" 2>/dev/null; then continue; fi',
        "  break",
        "done",
        'log "trainer step exited with status $rc${got_signal:+ after SIG$got_signal (torchrun re-raises a relayed'
        ' signal as SignalException and exits 1: expected)}"',
        'if [ "$rc" -eq "$REQUEUE_EXIT" ] || { [ "$got_signal" = USR1 ] && [ "$rc" -ne 0 ]; }; then',
        '  log "requeueing job $SLURM_JOB_ID; it resumes from the newest checkpoint in $RUN_DIR"',
        '  scontrol requeue "$SLURM_JOB_ID" && exit 0',
        '  log "scontrol requeue failed: resubmit with sbatch $RUN_DIR/' + SCRIPT_NAME + ' (it resumes)"',
        "fi",
        'exit "$rc"',
        "",
    ]
    return "\n".join(lines)


def write_script(spec: JobSpec, argv: list[str] | None = None) -> Path:
    """Render into ``RUN/slurm.sbatch`` (atomically) and return its path."""
    spec.output.mkdir(parents=True, exist_ok=True)
    path = spec.output / SCRIPT_NAME
    return write_atomic(path, render(spec, argv), executable=True)


def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        raise SlurmError(f"`{cmd[0]}` not found on PATH: install the SLURM client (Debian: slurm-client) "
                         "or start the local test cluster with `bash scripts/slurm_local.sh`")
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"`{' '.join(cmd)}` did not answer in {timeout:.0f}s: is slurmctld reachable?") from None


def _slurm_failure(cmd: str, proc: subprocess.CompletedProcess) -> SlurmError:
    err = (proc.stderr or proc.stdout).strip()
    last = err.splitlines()[-1] if err else f"exit status {proc.returncode}"
    if re.search(r"contact slurm controller|Connection refused|Unable to establish|"
                 r"Could not establish a configuration source|Zero Bytes were transmitted", err, re.I):
        return SlurmError(f"{cmd}: cannot reach the SLURM controller ({last}); check that `sinfo` works "
                          "(local test cluster: bash scripts/slurm_local.sh)")
    return SlurmError(f"{cmd} failed: {last}")


def job_ids(run_dir: str | Path) -> list[str]:
    """Job ids submitted for this run dir, oldest first."""
    p = Path(run_dir) / JOBS_FILE
    if not p.is_file():
        return []
    return [ln.split("\t", 1)[0] for ln in p.read_text().splitlines() if ln.strip()]


def job_state(job_id: str) -> str | None:
    """Current state from the controller (squeue, then scontrol for recently finished jobs), or None."""
    proc = _run(["squeue", "-h", "-j", job_id, "-o", "%T"])
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.split()[0]
    proc = _run(["scontrol", "show", "job", "-o", job_id])
    m = re.search(r"\bJobState=(\S+)", proc.stdout) if proc.returncode == 0 else None
    if m:
        return m.group(1)
    if shutil.which("sacct"):
        proc = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], capture_output=True,
                              text=True, timeout=60)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.split()[0]
    return None


def submit(spec: JobSpec, argv: list[str] | None = None, allow_concurrent: bool = False) -> str:
    """Render into the run dir, `sbatch` it, record and return the job id.

    Refuses while an earlier job of the same run dir is still queued or running (two jobs
    writing one run dir would corrupt each other's checkpoints) unless `allow_concurrent`.
    """
    if shutil.which("sbatch") is None:
        raise SlurmError("`sbatch` not found on PATH: install the SLURM client (Debian: slurm-client) "
                         "or start the local test cluster with `bash scripts/slurm_local.sh`")
    ping = _run(["scontrol", "ping"], timeout=30)  # fails in ms; sbatch alone retries for a minute
    if ping.returncode != 0 and "DOWN" in ping.stdout:
        raise SlurmError(f"cannot reach the SLURM controller ({ping.stdout.strip().splitlines()[0]}); check that "
                         "`sinfo` works (local test cluster: bash scripts/slurm_local.sh)")
    if not allow_concurrent:
        for jid in job_ids(spec.output)[-1:]:
            state = job_state(jid)
            if state in ACTIVE_STATES:
                raise SlurmError(f"job {jid} is still {state} on {spec.output}; wait for it, `scancel {jid}`, "
                                 "or pick another --output")
    script = write_script(spec, argv)
    proc = _run(["sbatch", "--parsable", str(script)])
    if proc.returncode != 0:
        raise _slurm_failure("sbatch", proc)
    job_id = proc.stdout.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered {proc.stdout.strip()!r} instead of a job id")
    with open(spec.output / JOBS_FILE, "a") as f:
        f.write(f"{job_id}\t{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    return job_id


def status(run_dir: str | Path) -> dict:
    """What is known about a run dir: last job id and state, restarts, newest checkpoint, last step."""
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise SlurmError(f"RUN_DIR {run_dir}: no such directory; pass the --output of `accel slurm submit`")
    ids = job_ids(run_dir)
    info: dict = {"run_dir": str(run_dir), "job_id": ids[-1] if ids else None, "submissions": len(ids)}
    if ids:
        info["state"] = job_state(ids[-1]) or "unknown to the controller (finished long ago?)"
        proc = _run(["scontrol", "show", "job", "-o", ids[-1]])
        m = re.search(r"\bRestarts=(\d+)", proc.stdout) if proc.returncode == 0 else None
        if m:
            info["restarts"] = int(m.group(1))
    ckpt = latest_checkpoint(run_dir)
    info["checkpoint"] = str(ckpt) if ckpt else None
    info["last_step"] = last_logged_step(run_dir)
    return info


def last_logged_step(run_dir: Path) -> int | None:
    """The `step` of the last line of metrics.jsonl (None without metrics)."""
    p = Path(run_dir) / "metrics.jsonl"
    if not p.is_file():
        return None
    for line in reversed(p.read_text().splitlines()):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "step" in rec:
            return int(rec["step"])
    return None
