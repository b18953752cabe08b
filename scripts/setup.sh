#!/usr/bin/env bash
# Creates .venv and installs accel with its test extras. CPU torch 2.13.0 first, so pip
# does not pull a multi-GB CUDA build to satisfy the range in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch, transformers, accel.cli.main; print('accel ready: torch', torch.__version__, 'transformers', transformers.__version__)"
