"""Pilot for the long world's teachers: learning curves of candidate sizes and starting points.

Before committing CPU-hours to a build, each candidate trains a few thousand steps on the long
suite and is evaluated every `--eval-every` steps on the hardest tasks (arithmetic chains and
running sums) with the build's own held-out check (one token per forward, early-stopped). Each
candidate records its CPU-seconds per step, so the table says both how fast a size learns and
what a full build of it would cost. Results (and the curves) go to OUT/pilot.json; a rerun skips
the candidates already done.

    OMP_NUM_THREADS=1 python scripts/long_pilot.py --out runs/long-pilot
    OMP_NUM_THREADS=1 python scripts/long_pilot.py --token-accuracy runs/long-pilot/ar-4x128-short ...

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
import random
import resource
import sys
from pathlib import Path

import torch

from accel.data.collate import tokenize_examples
from accel.data.long_tasks import LONG_TASK_NAMES
from accel.data.tasks import test_split
from accel.data.tokenizer import chat_prompt_ids
from accel.models.backbone import load_backbone
from accel.models.masks import full_mask, position_ids
from accel.models.weights import builtin_dir
from accel.trainers.teachers import TeacherBuildConfig, _dllm_batch, build_teacher

HARD = ["long-step", "long-down", "long-anystart"]
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


@torch.no_grad()
def token_accuracy(model_dir: str, n: int = 16, seed: int = 0) -> dict[str, float]:
    """Per-token accuracy on held-out answers, per long task: where exact match is still 0 for every
    task, this is what says how far a candidate got. AR: teacher-forced next-token accuracy over the
    answer and its end token; dLLM: accuracy on the masked answer tokens of the build's own training
    states (half uniform-ratio, half semi-AR block states), seeded."""
    a = load_backbone(model_dir)
    a.model.eval()
    tok, out, rng = a.tokenizer, {}, random.Random(seed)
    for task in LONG_TASK_NAMES:
        exs = test_split(task, n)
        if a.kind == "ar":
            ok = tot = 0
            for e in exs:
                p = chat_prompt_ids(tok, e["prompt"])
                r = tok(e["response"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                ids = torch.tensor([p + r])
                pred = a.model(input_ids=ids).logits[0, len(p) - 1:-1].argmax(-1)
                ok += (pred == ids[0, len(p):]).sum().item()
                tot += len(r)
            out[task] = ok / tot
        else:
            pairs = tokenize_examples(tok, exs)
            inp, tgt, valid, masked = _dllm_batch(pairs, tok, rng, a.mask_id, long=True)
            logits, _ = a.dllm_logits(inp, full_mask(valid), position_ids(valid))
            eos = tgt == tok.eos_token_id
            keep = masked & ~eos  # padding after the answer is easy; score the answer's own tokens
            out[task] = (logits.argmax(-1)[keep] == tgt[keep]).float().mean().item()
    return {k: round(v, 3) for k, v in out.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="where the candidates train and pilot.json goes (required to train)")
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated; default: all")
    ap.add_argument("--steps", default="", help="name=N,... steps per candidate (default 1000 each)")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--token-accuracy", nargs="+", metavar="MODEL_DIR", default=None,
                    help="only print per-task held-out token accuracy of these model directories and exit")
    a = ap.parse_args(argv)
    if a.token_accuracy:
        torch.set_num_threads(1)
        for d in a.token_accuracy:
            print(d, json.dumps(token_accuracy(d)), flush=True)
        return
    if a.out is None:
        ap.error("--out is required (or --token-accuracy MODEL_DIR ...)")
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
