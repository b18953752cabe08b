"""Pilot for the long world's teachers: learning curves of candidate sizes and starting points.

Before committing CPU-hours to a build, each candidate trains a few thousand steps on the long
suite and is evaluated every `--eval-every` steps on the hardest tasks (arithmetic chains and
running sums) with the build's own held-out check (one token per forward, early-stopped). Each
candidate records its CPU-seconds per step, so the table says both how fast a size learns and
what a full build of it would cost. Results (and the curves) go to OUT/pilot.json; a rerun skips
the candidates already done.

    OMP_NUM_THREADS=1 python scripts/long_pilot.py --out runs/long-pilot

Candidates (name -> teacher kind, model shape, starting point):
  ar-4x128-short    the short world's shape, from the short AR teacher's weights (same tokenizer)
  ar-6x192          a larger AR model from scratch (no short teacher has its shape)
  ar-4x128-short+   ar-4x128-short continued on a fresh schedule (a second learning-rate cycle)
  dllm-4x128-ar     the dLLM from ar-4x128-short's pilot weights (AR -> diffusion, attention annealed)
  dllm-4x128-short  the dLLM from the short dLLM teacher's weights (already bidirectional)
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

from accel.models.weights import builtin_dir
from accel.trainers.teachers import TeacherBuildConfig, build_teacher

HARD = ["long-arith", "long-cumsum", "long-copy"]
CANDIDATES = {
    "ar-4x128-short": dict(kind="ar", init="builtin:ar", overrides={}, anneal=0),
    "ar-6x192": dict(kind="ar", init="", overrides=dict(hidden_size=192, num_hidden_layers=6, num_attention_heads=6,
                                                        num_key_value_heads=6, intermediate_size=576), anneal=0),
    "ar-4x128-short+": dict(kind="ar", init="pilot:ar-4x128-short", overrides={}, anneal=0),
    "dllm-4x128-ar": dict(kind="dllm", init="pilot:ar-4x128-short", overrides={}, anneal=300),
    "dllm-4x128-short": dict(kind="dllm", init="builtin:dllm", overrides={}, anneal=0),
}


def start_from(init: str, out: Path) -> str:
    if init.startswith("builtin:"):
        return str(builtin_dir(init.removeprefix("builtin:")))
    if init.startswith("pilot:"):
        return str(out / init.removeprefix("pilot:"))
    return ""


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(name: str, steps: int, eval_every: int, batch_size: int, out: Path, log) -> dict:
    c = CANDIDATES[name]
    cfg = TeacherBuildConfig.for_long(
        c["kind"], max_steps=steps, eval_every=eval_every, eval_n=16, eval_tasks=list(HARD), target=1.01,
        save_every=0, log_every=0, warmup_steps=100, model_overrides=c["overrides"], batch_size=batch_size,
        train_per_task=4000,
        init_from=start_from(c["init"], out), attention_anneal_steps=c["anneal"],
        shift_logits=c["kind"] == "dllm" and c["init"] != "")
    t0 = cpu_s()
    build_teacher(cfg, out / name, log=log)
    spent = cpu_s() - t0
    curve = [json.loads(line) for line in (out / f"{name}.work" / "metrics.jsonl").read_text().splitlines()]
    evals = [{"step": r["step"], **r["eval"]} for r in curve if "eval" in r]
    return {"candidate": name, **{k: v for k, v in c.items() if k != "overrides"}, "shape": c["overrides"] or "4x128",
            "steps": steps, "batch_size": batch_size, "cpu_s": round(spent, 1), "cpu_s_per_step": round(spent / steps, 3), "curve": evals}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated; default: all")
    ap.add_argument("--steps", default="", help="name=N,... steps per candidate (default 1000 each)")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args(argv)
    steps = {k: int(v) for k, v in (p.split("=") for p in filter(None, a.steps.split(",")))}
    a.out.mkdir(parents=True, exist_ok=True)
    res_file = a.out / "pilot.json"
    results = json.loads(res_file.read_text()) if res_file.exists() else {}
    for name in a.candidates.split(","):
        if name not in CANDIDATES:
            sys.exit(f"unknown candidate {name!r}; choose from {', '.join(CANDIDATES)}")
        if name in results:
            continue
        results[name] = run(name, steps.get(name, 1000), a.eval_every, a.batch_size, a.out,
                            log=lambda m, n=name: print(f"[{n}] {m}", flush=True))
        res_file.write_text(json.dumps(results, indent=1))
    print(f"{'candidate':18} {'CPU-s/step':>10}  " + "  ".join(f"step {e['step']}: " + "/".join(
        f"{e[t]:.2f}" for t in HARD) for e in next(iter(results.values()))["curve"][:0]))
    for r in results.values():
        pts = "  ".join(f"{e['step']}:" + "/".join(f"{e[t]:.2f}" for t in HARD) for e in r["curve"])
        print(f"{r['candidate']:18} {r['cpu_s_per_step']:>10}  {pts}")


if __name__ == "__main__":
    main()
