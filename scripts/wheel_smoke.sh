#!/usr/bin/env bash
# Builds accel's wheel, installs it into a fresh venv and runs it from outside the source tree:
# `accel --help`, a short bench on the built-in dLLM, and a short Learn2PD run -> export -> bench.
# What a user on a cluster gets from `pip install accel-*.whl` is what this checks, not the
# editable install the tests use. Usage: bash scripts/wheel_smoke.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
work=${1:-$(mktemp -d)}
mkdir -p "$work"
quiet() { grep -vE "^WARNING: Location|^\s*$" || true; }

"$PY" -m pip wheel --no-deps -q -w "$work/dist" . 2>&1 | quiet
"$PY" -m venv "$work/venv"
v="$work/venv/bin"
"$v/python" -m pip install -q --upgrade pip 2>&1 | quiet
"$v/python" -m pip install -q "torch==2.13.0" 2>&1 | quiet
"$v/python" -m pip install -q "$work"/dist/accel-*.whl 2>&1 | quiet

cd "$work"   # outside the source tree: only the wheel's files can be imported
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
"$v/accel" --help > /dev/null
"$v/python" - <<'PY'
import accel.recipes, pkgutil, importlib, pathlib
# every recipe package and its shipped configs are in the wheel
names = [m.name for m in pkgutil.iter_modules(accel.recipes.__path__)]
for n in names:
    importlib.import_module(f"accel.recipes.{n}")
configs = list((pathlib.Path(accel.recipes.__file__).parent / "configs").rglob("*.yaml"))
assert len(names) >= 7 and configs, (names, configs)
print(f"wheel: {len(names)} recipe packages, {len(configs)} shipped configs")
PY
step() {  # step NAME CMD...: output to NAME.log, shown only when the step fails
  local name=$1; shift
  if ! "$@" > "$name.log" 2>&1; then
    echo "wheel smoke: '$*' failed; its output ($work/$name.log):"; tail -30 "$name.log"; exit 1
  fi
}
step bench "$v/accel" bench builtin:dllm -m vanilla -m fast-dllm --task copy --limit 2 --json bench.json
step train "$v/accel" train learn2pd --output r n_per_task=2 tasks=copy,arith max_steps=20 calibrate_tau=false logging_steps=10 save_steps=20
step export "$v/accel" export r --out ck
step bench-ckpt "$v/accel" bench ck --task copy --limit 2 --json ck.json
"$v/python" -c "import json; r=json.load(open('ck.json')); print('wheel smoke: exported Learn2PD run benched with', ', '.join(m['name'] for m in r['methods']))"
echo "wheel smoke: ok ($work)"
