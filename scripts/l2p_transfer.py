"""Learn2PD leave-one-task-out transfer (issue 18): does a filter hold up on a task format it never saw?

usage: python scripts/l2p_transfer.py --teacher builtin:dllm --out runs/l2p-transfer [--tasks all] ...

The filter sees only a block's confidences, so one trained on some formats can over-unmask on
another. For each task T of the list this trains the recipe's filter on every task but T, picks its
τ the recipe's way (fresh train-split prompts of its own training tasks, never T), and benches it on
T's test split beside the filter trained on all tasks and beside Fast-dLLM (vanilla gives the
reference accuracy). One oracle dataset (all tasks) serves every filter: a filter trained without
T drops T's oracle steps. The table: held-out task, then accuracy and answer tokens per forward
of each row, and τ.

Two fixes to try when held-out accuracy drops. `--calibrate per-task`: τ must keep *every* training
task at its reference accuracy, not the pooled mean, so a format the filter reads badly cannot hide
behind the easy ones. `--shift-copies N` (the recipe's `shift_copies`, a training-mix change):
every oracle step also at N-1 more circular offsets of its block (`model.shifted_copies`), so the
filter cannot tie a confidence pattern to the positions where the training formats put it. What
each did on the short world is in docs/long-world.md. Every piece (oracle data, filters, benches)
is cached under --out: a rerun resumes, and a changed setting goes to another --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from accel.core.errors import UserError
from accel.data.prompts import encode_prompt
from accel.data.tasks import generate, resolve_tasks, score
from accel.decoding.bench import run_bench
from accel.decoding.methods import DecodeMethod, get_method
from accel.decoding.report import write_json
from accel.decoding.target import Target, default_gen_len, default_tasks
from accel.models.backbone import load_backbone
from accel.recipes.learn2pd import model as M, oracle
from accel.recipes.learn2pd.calibrate import TAU_GRID, calibrate_tau
from accel.recipes.learn2pd.decode import generate_learn2pd
from accel.recipes.learn2pd.inference import METHODS, _l2p
from accel.recipes.learn2pd.model import oracle_tensors
from accel.recipes.learn2pd.oracle import reference_canvas


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="builtin:dllm", help="dLLM teacher (builtin:dllm, builtin:dllm-long, a dir)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks or a suite (default: the teacher's suite)")
    p.add_argument("--out", type=Path, required=True, help="cache and result folder (rerun to resume)")
    p.add_argument("--n-per-task", type=int, default=40, help="oracle prompts per task (recipe default 40)")
    p.add_argument("--steps", type=int, default=1500, help="full-batch filter steps (recipe default 1500)")
    p.add_argument("--lr", type=float, default=3e-3, help="filter learning rate (recipe default 3e-3)")
    p.add_argument("--calib-per-task", type=int, default=24, help="τ-calibration prompts per training task")
    p.add_argument("--calibrate", choices=("pooled", "per-task"), default="pooled",
                   help="pooled: the recipe's rule (mean accuracy of the training tasks); per-task: every "
                        "training task keeps its reference accuracy")
    p.add_argument("--shift-copies", dest="shifts", type=int, default=1,
                   help="training mix (the recipe's shift_copies): each oracle step at this many circular block "
                        "offsets (1: the oracle steps as they are; 32 at block 32: every offset)")
    p.add_argument("--limit", type=int, default=32, help="test prompts of the held-out task")
    p.add_argument("--gen-len", type=int, default=None, help="default: 64 short world, 256 long world")
    p.add_argument("--block-len", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for k in ("n_per_task", "steps", "calib_per_task", "limit", "block_len", "batch_size", "threads", "shifts"):
        if getattr(a, k) < 1:
            p.error(f"--{k.replace('_', '-').replace('shifts', 'shift-copies')} must be >= 1")
    a.tag = a.calibrate + (f"-shifts{a.shifts}" if a.shifts > 1 else "")
    return a


def oracle_data(adapter, tasks, a, gen_len):
    """The oracle tensors of every task, plus each step's task name (generated once, cached)."""
    prompts = oracle.load_prompts("suite", tasks, a.n_per_task, a.seed)
    out = oracle.generate_oracle_dataset(adapter, prompts, a.out / "oracle", gen_len=gen_len, block_len=a.block_len,
                                         batch_size=a.batch_size, source="suite", progress=False)
    ds, _ = oracle.load_oracle_dataset(out)
    return oracle_tensors(ds), list(ds["task"])


def calibration_set(tasks, a):
    """Fresh train-split examples of `tasks` after the oracle's n_per_task (the recipe's calibration prompts)."""
    return [e for t in tasks for e in generate(t, "train", a.n_per_task + a.calib_per_task, a.seed)[a.n_per_task:]]


def pick_tau(per_task: dict[float, dict[str, float]], ref: dict[str, float]) -> float:
    """The smallest τ at which every training task keeps its reference accuracy (or the best any τ
    reaches on that task, when none reaches it: as the recipe's pooled rule does)."""
    bar = {t: min(ref[t], max(p[t] for p in per_task.values())) for t in ref}
    return min(tau for tau in per_task if all(per_task[tau][t] >= bar[t] - 1e-9 for t in ref))


def train_one(name, adapter, data, train_tasks, a, gen_len):
    """(filter, τ, info) trained on `train_tasks`' oracle steps and calibrated on them: weights cached as
    OUT/filters/NAME.safetensors, τ as OUT/filters/NAME.<calibrate>.json."""
    d = a.out / "filters" / (f"shifts{a.shifts}" if a.shifts > 1 else "")
    wf, jf = d / f"{name}.safetensors", d / f"{name}.{a.calibrate}.json"
    filt = M.UnmaskFilter(a.block_len, 32)
    if wf.exists():
        filt.load_state_dict(load_file(str(wf)))
    else:
        t, step_task = data
        keep = torch.tensor([x in train_tasks for x in step_task])
        train, _val = M.split_by_prompt({k: v[keep] for k, v in t.items()}, 0.2, a.seed)  # the recipe's split
        train = M.shifted_copies(train, a.shifts)
        torch.manual_seed(a.seed)
        M.train_filter(filt, {k: train[k] for k in ("conf", "label", "masked")}, a.steps, lr=a.lr)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in filt.state_dict().items()}, str(wf))
    filt.eval()
    if jf.exists():
        info = json.loads(jf.read_text())
        return filt, info["tau"], info
    exs = calibration_set(sorted(train_tasks), a)
    ids = [encode_prompt(adapter.tokenizer, e["prompt"]) for e in exs]
    if a.calibrate == "pooled":
        with torch.no_grad():
            tau, table = calibrate_tau(adapter, filt, ids, gen_len, eotp=True, batch_size=a.batch_size,
                                       scorer=lambda i, text: score(exs[i], text))
        info = {"tau": tau, "calibration": table}
    else:
        per, ref = per_task_accuracy(adapter, filt, exs, ids, gen_len, a, TAU_GRID)
        tau = pick_tau(per, ref)
        info = {"tau": tau, "reference": ref, "per_task": {str(k): v for k, v in per.items()}}
    info["train_tasks"] = sorted(train_tasks)
    jf.write_text(json.dumps(info, indent=1))
    return filt, tau, info


def per_task_accuracy(adapter, filt, exs, ids, gen_len, a, taus):
    """({τ: {task: accuracy}}, {task: reference accuracy}) on the calibration prompts."""
    def accs(texts):
        out: dict[str, list[bool]] = {}
        for e, txt in zip(exs, texts):
            out.setdefault(e["task"], []).append(score(e, txt))
        return {t: sum(v) / len(v) for t, v in out.items()}

    chunks = [ids[i:i + a.batch_size] for i in range(0, len(ids), a.batch_size)]
    with torch.no_grad():
        ref = accs([x for c in chunks for x in reference_canvas(adapter, c, gen_len, a.block_len)[1].texts])
        per = {tau: accs([x for c in chunks for x in generate_learn2pd(adapter, c, gen_len, filt, tau=tau,
                                                                        eotp=True).texts]) for tau in taus}
    return per, ref


def bench_task(task, adapter, filters, a, gen_len, teacher):
    """The bench report of held-out `task`: vanilla, fast-dllm and a learn2pd+eotp row per filter (cached)."""
    f = a.out / "bench" / a.tag / f"{task}.json"
    if f.exists():
        return json.loads(f.read_text())
    methods = {n: get_method(n, "dllm", {"block_len": a.block_len}) for n in ("vanilla", "fast-dllm")}
    for label, (filt, tau) in filters.items():
        methods[label] = DecodeMethod(label, "dllm", f"{METHODS['learn2pd+eotp']} (tau {tau})", _l2p, block=a.block_len,
                                      options=dict(filt=filt, tau=tau, eotp=True, cache=None))
    target = Target(spec=teacher, adapter=adapter, default_methods=list(methods), recipe_methods=methods)
    rep = run_bench(target, list(methods), [task], limit=a.limit, gen_len=gen_len, batch_size=a.batch_size)
    f.parent.mkdir(parents=True, exist_ok=True)
    write_json(rep, f)
    return rep


def table(results: list[dict]) -> str:
    cols = ["vanilla", "fast-dllm", "l2p-all", "l2p-held-out"]
    head = (f"{'held-out task':<14}" + "".join(f"{c + ' acc':>17}{'tok/fwd':>8}" for c in cols)
            + f"{'tau all':>9}{'tau held-out':>13}")
    lines = [head]
    for r in results:
        cells = "".join(f"{r[c]['accuracy']:>17.3f}{r[c]['tpf']:>8.2f}" for c in cols)
        lines.append(f"{r['task']:<14}{cells}{r['tau_all']:>9g}{r['tau_held_out']:>13g}")
    n = len(results)
    mean = "".join(f"{sum(r[c]['accuracy'] for r in results) / n:>17.3f}{sum(r[c]['tpf'] for r in results) / n:>8.2f}"
                   for c in cols)
    lines.append(f"{'mean':<14}{mean}")
    return "\n".join(lines)


def main(argv=None) -> int:
    a = parse(argv)
    t0 = time.time()
    torch.set_num_threads(a.threads)
    try:
        adapter = load_backbone(a.teacher)
        if adapter.kind != "dllm":
            raise UserError(f"--teacher {a.teacher} is an AR model; Learn2PD needs a dLLM (e.g. builtin:dllm)")
        tasks = resolve_tasks(a.tasks.split(",") if a.tasks else default_tasks(adapter))
    except UserError as e:
        print(f"l2p_transfer: {e}", file=sys.stderr)
        return 2
    if len(tasks) < 2:
        print("l2p_transfer: --tasks needs at least two tasks (one is held out)", file=sys.stderr)
        return 2
    gen_len = a.gen_len or default_gen_len(adapter)
    settings = {"teacher": a.teacher, "tasks": tasks, "n_per_task": a.n_per_task, "steps": a.steps, "lr": a.lr,
                "calib_per_task": a.calib_per_task, "limit": a.limit, "gen_len": gen_len, "block_len": a.block_len,
                "seed": a.seed}
    sf = a.out / "settings.json"
    if sf.exists() and json.loads(sf.read_text()) != settings:
        print(f"l2p_transfer: {a.out} holds a run with other settings ({sf}); pass another --out", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    sf.write_text(json.dumps(settings, indent=1))
    data = oracle_data(adapter, tasks, a, gen_len)
    print(f"[l2p-transfer] oracle data: {len(data[1])} steps over {len(tasks)} tasks ({time.time() - t0:.0f} s)",
          flush=True)
    f_all, tau_all, _ = train_one("all", adapter, data, set(tasks), a, gen_len)
    results = []
    for t in tasks:
        f_t, tau_t, _ = train_one(f"without-{t}", adapter, data, set(tasks) - {t}, a, gen_len)
        rep = bench_task(t, adapter, {"l2p-all": (f_all, tau_all), "l2p-held-out": (f_t, tau_t)}, a, gen_len,
                         a.teacher)
        rows = {r["method"]: r for r in rep["rows"] if r["task"] == t}
        results.append({"task": t, "tau_all": tau_all, "tau_held_out": tau_t,
                        **{m: {"accuracy": r["accuracy"], "tpf": r["answer_tokens_per_forward"]}
                           for m, r in rows.items()}})
        print(f"[l2p-transfer] {t}: done ({time.time() - t0:.0f} s)", flush=True)
    out = {"teacher": a.teacher, "tasks": tasks, "gen_len": gen_len, "limit": a.limit, "n_per_task": a.n_per_task,
           "steps": a.steps, "calibrate": a.calibrate, "shifts": a.shifts, "threads": a.threads, "results": results,
           "seconds": round(time.time() - t0, 1)}
    (a.out / f"transfer-{a.tag}.json").write_text(json.dumps(out, indent=1))
    print(table(results))
    print(f"[l2p-transfer] {time.time() - t0:.0f} s wall, {a.threads} thread(s); {a.out}/transfer-{a.tag}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
