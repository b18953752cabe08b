#!/usr/bin/env bash
# The test command: set up, start the local SLURM cluster when possible (its tests skip
# otherwise), run the fast suite, then the wheel smoke test (scripts/wheel_smoke.sh). Extra args go
# to pytest (e.g. `-m slow`) and skip the wheel check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f scripts/slurm_local.sh ]; then
  bash scripts/slurm_local.sh || echo "note: local SLURM cluster could not start; SLURM tests will skip"
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/python -m pytest "$@"
# The full run also checks the wheel a non-editable install gets (skipped when pytest args are given).
if [ $# -eq 0 ] && [ "${ACCEL_SKIP_WHEEL:-0}" != 1 ]; then
  bash scripts/wheel_smoke.sh
fi
