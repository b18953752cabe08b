#!/usr/bin/env bash
# Creates .venv and installs accel (editable) with its test extras. CPU torch 2.13.0 first, so pip
# does not pull a multi-GB CUDA build to satisfy the range in pyproject.toml.
# A second run that finds the same pyproject.toml installed for this tree does nothing (a second or
# two); ACCEL_SETUP_FORCE=1 reinstalls. pip's output goes to .venv/setup.log, shown only on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=.venv/.accel-setup
LOG=.venv/setup.log
want="$(pwd) $(cat pyproject.toml setup.py scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -z "${ACCEL_SETUP_FORCE:-}" ] && [ -x .venv/bin/python ] && [ "$(cat $STAMP 2>/dev/null)" = "$want" ] \
   && .venv/bin/python -c "import accel.cli.main" 2>/dev/null; then
  echo "accel already set up in .venv (ACCEL_SETUP_FORCE=1 reinstalls)"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
: > $LOG
step() {  # step DESCRIPTION CMD...: run quietly, log everything, show the log if it fails
  local what=$1; shift
  if ! "$@" >> $LOG 2>&1; then
    tail -n 40 $LOG >&2
    echo "setup.sh: $what failed; the full log is in $LOG" >&2
    exit 1
  fi
}
echo "setting up accel in .venv (a minute or more the first time; log: $LOG)"
step "upgrading pip" python -m pip install --upgrade pip
python -c "import torch" 2>/dev/null || step "installing torch 2.13.0 (CPU)" \
  python -m pip install "torch==2.13.0"
step "installing accel[dev]" python -m pip install -e ".[dev]"
echo "$want" > $STAMP
python -c "import torch, transformers, accel.cli.main; print('accel ready: torch', torch.__version__, 'transformers', transformers.__version__)"
