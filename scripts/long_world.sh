#!/usr/bin/env bash
# Issue 18's judged sequence on the long-answer world, for every dLLM recipe, then one summary table.
#
#   scripts/long_world.sh [OUT]        (default OUT: runs/long-world; rerun the same command to resume)
#
# Needs the long teachers (`accel teacher build ar-long`, then `accel teacher build dllm-long`: a budget of
# 90 CPU-minutes, docs/long-world.md); without them it stops at once. LONG_DLLM / LONG_AR point it at
# teachers built elsewhere (a directory from `accel teacher build ... --out DIR`).
#
# Steps, each skipped when its output exists (a train step also resumes itself when rerun):
#   teachers: accel bench on the dLLM teacher (vanilla, fast-dllm, entropy-threshold) and the AR teacher
#   learn2pd, dparallel, d2f, joint-sampler: train with recipes/configs/<recipe>/long.yaml -> accel export
#     -> accel bench CKPT --limit 16 --task long --sweep --json --plot (d2f: --compare the AR teacher); gen and
#     block are the world's own (128 / 16), which the teachers' config.json carries
#   python scripts/long_summary.py OUT: the judged ratios, accuracy deltas and AUP from the JSONs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-runs/long-world}
DLLM=${LONG_DLLM:-builtin:dllm-long}
AR=${LONG_AR:-builtin:ar-long}
ACCEL=${ACCEL:-accel}
PYTHON=${PYTHON:-python}  # the interpreter accel is installed in (the summary imports it)
BENCH=(--limit 16 --task long --sweep)

built() {  # a teacher target with weights: builtin:NAME (the package's slot) or a model directory
    local d=$1
    case $d in builtin:*) d="$ROOT/models/builtin/${d#builtin:}" ;; esac
    [ -f "$d/config.json" ] && compgen -G "$d/*.safetensors" > /dev/null
}
for t in "$AR" "$DLLM"; do
    if ! built "$t"; then
        echo "long_world.sh: $t is not built; build the long teachers first: accel teacher build ar-long && accel teacher build dllm-long (a 90 CPU-minute budget, docs/long-world.md)" >&2
        exit 2
    fi
done

step() {  # step NAME DONE_FILE COMMAND...: runs COMMAND unless DONE_FILE exists
    local name=$1 done_file=$2
    shift 2
    if [ -e "$done_file" ]; then
        echo "[long-world] $name: done ($done_file)"
        return
    fi
    echo "[long-world] $name: $*"
    "$@"
}

mkdir -p "$OUT"
step "bench the dLLM teacher" "$OUT/teacher.json" "$ACCEL" bench "$DLLM" -m vanilla -m fast-dllm \
    -m entropy-threshold "${BENCH[@]}" --json "$OUT/teacher.json" --plot "$OUT/teacher.png"
step "bench the AR teacher" "$OUT/ar.json" "$ACCEL" bench "$AR" --limit 16 --task long \
    --json "$OUT/ar.json"

recipe() {  # recipe NAME GROUP [extra bench args]: train (GROUP: train|distill), export, bench
    local name=$1 group=$2 run="$OUT/runs/$1" ckpt="$OUT/ckpt/$1"
    shift 2
    step "$group $name" "$run/finished.json" "$ACCEL" "$group" "$name" \
        --config "$ROOT/recipes/configs/$name/long.yaml" --output "$run" "backbone=$DLLM"
    step "export $name" "$ckpt/config.json" "$ACCEL" export "$run" --out "$ckpt"
    step "bench $name" "$OUT/$name.json" "$ACCEL" bench "$ckpt" "${BENCH[@]}" "$@" \
        --json "$OUT/$name.json" --plot "$OUT/$name.png"
}
recipe learn2pd train
recipe dparallel distill
recipe d2f distill --compare "$AR"
recipe joint-sampler train

"$PYTHON" "$ROOT/scripts/long_summary.py" "$OUT" --json "$OUT/summary.json"
