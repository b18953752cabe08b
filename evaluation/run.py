"""`accel eval`'s run: every chosen method (and with `sweep` each point of its knob) evaluated by
lm-eval on the same tasks, then one report: lm-eval's results per method, untouched (its JSON schema),
and accel's rows beside them — the task's primary metric, NFE, answer tokens per forward, tokens/s,
speedup over the first method, for lossless AR methods (greedy, tree methods with greedy acceptance) the
fraction of generate_until requests whose tokens equal greedy decoding's (`identical_to_greedy`, as
`accel bench --prompts` scores real prompts) and, with `sweep`, AUP per method per task
(`accel.decoding.report.add_aup`, the same computation as `accel bench --sweep`).

The target loads once (`accel.recipes.targets.load_target`), the methods are chosen by the bench's
plan (`accel.decoding.plan`), and each one decodes through `accel.evaluation.harness.AccelLM`.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Callable

import lm_eval
from lm_eval.utils import handle_non_serializable

from accel.decoding.environment import environment
from accel.decoding.methods import get_method
from accel.decoding.plan import Plan, bound_methods
from accel.decoding.report import add_aup
from accel.decoding.prompt_sets import trimmed
from accel.decoding.runs import knob_info, method_help, sweep_runs
from accel.decoding.scoring import report_rows
from accel.decoding.stop import StopStrings
from accel.decoding.target import Target
from accel.decoding.timing import RowStats
from accel.evaluation.harness import AccelLM, Scoring
from accel.evaluation.humaneval import TASK as HUMANEVAL
from accel.evaluation.humaneval import evaluate_humaneval
from accel.evaluation.tasks import dataset_errors


def primary_metric(task_results: dict) -> tuple[str, float] | None:
    """(name, value) of a task's first reported metric (lm-eval lists them in the task's metric order)."""
    for key, value in task_results.items():
        if "," in key and "_stderr" not in key and isinstance(value, (int, float)) and not isinstance(value, bool):
            return key, float(value)
    return None


def evaluate(p: Plan, main: Target, tasks: list[str], tm, *, limit: int | None = None,
             num_fewshot: int | None = None, max_gen_toks: int | None = None, chat: bool | None = None,
             scoring: Scoring | None = None, progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Runs lm-eval's `tasks` (names `tm` knows) with every method of the checked plan `p` on the loaded
    `main`; returns the report dict (`lm_eval`: {method: lm-eval's results}, `rows`, `aup`,
    `identical_to_greedy`). `scoring`: how dLLMs estimate loglikelihoods (`accel.evaluation.loglik`)."""
    chosen, _ = bound_methods(p, main, [])
    runs = [(n, fn, main) for n, fn in chosen.items()]
    if p.request.sweep:
        runs = sweep_runs(runs)
    gen_kwargs = f"max_gen_toks={max_gen_toks}" if max_gen_toks else None
    results, stats, task_names, lms, scores, known, gen_lens = {}, {}, None, {}, {}, {}, {}
    for k, (name, fn, _t) in enumerate(runs):
        if progress:
            progress(k, len(runs), f"{name}: evaluating")
        lm = lms[name] = AccelLM.from_method(main, name, fn, p.request.batch_size, chat, scoring, scores)
        hub_tasks = [t for t in tasks if t != HUMANEVAL]
        res = {"results": {}, "configs": {}, "versions": {}, "n-shot": {}, "n-samples": {}}
        if hub_tasks:
            with dataset_errors(), children_without_stderr():
                res = lm_eval.simple_evaluate(model=lm, tasks=hub_tasks, num_fewshot=num_fewshot, limit=limit,
                                              task_manager=tm, log_samples=False, gen_kwargs=gen_kwargs)
            res = json.loads(json.dumps(res, default=handle_non_serializable))
        if HUMANEVAL in tasks:  # accel-side: the same AccelLM decodes it, the sandbox scores it
            he = evaluate_humaneval(lm, limit, max_gen_toks, known=known)
            res.setdefault("samples", {})[HUMANEVAL] = he.pop("samples")
            for key, value in he.items():
                res.setdefault(key, {}).update(value)
        results[name] = res
        task_names = task_names or list(res["results"])
        for task, items in lm.outputs.items():
            gen_lens.setdefault(task, set()).update(key[1] for key, _row in items)
        for task in task_names:
            s = lm.stats.get(task, RowStats())
            s.n = s.n or int(res.get("n-samples", {}).get(task, {}).get("effective", 0)) or 1
            metric = primary_metric(res["results"].get(task, {}))
            s.correct = metric[1] * s.n if metric else 0.0  # the report's accuracy column is the metric
            stats[(name, task)] = s
    if progress:
        progress(len(runs), len(runs), "done")
    rows = report_rows([n for n, _fn, _t in runs], task_names, stats)
    same = identical_to_greedy(lms, main, p.request.batch_size or main.default_batch_size or 32)
    for row in rows:
        if row["method"] in same:
            row["identical_to_greedy"] = same[row["method"]].get(row["task"])
    first = results[runs[0][0]]["results"]
    for row in rows:
        metric = primary_metric(first.get(row["task"], {})) if row["task"] != "all" else None
        row["metric"] = metric[0] if metric else ("mean" if row["task"] == "all" else None)
    report = {
        "target": main.spec, "kind": main.kind, "tasks": task_names, "limit": limit, "num_fewshot": num_fewshot,
        "max_gen_toks": max_gen_toks, "block_len": p.request.block_len, "chat": chat,
        "batch_size": p.request.batch_size, "sweep": bool(p.request.sweep),
        "gen_len": {task: sorted(g) for task, g in gen_lens.items()},
        "methods": [{"name": n, "target": main.spec, "kind": main.kind, "help": method_help(fn),
                     "timed": getattr(fn, "timed", True), **knob_info(n, fn)} for n, fn, _t in runs],
        **environment(main.adapter),
        "rows": rows,
        "identical_to_greedy": same,
        "lm_eval": results,
    }
    add_aup(report)
    return report


@contextlib.contextmanager
def children_without_stderr():
    """lm-eval records the working directory's git commit by running `git describe --always` with our stderr
    inherited, and outside a repository git's "fatal: not a git repository" line lands there (once per
    method). During the block, fd 2 is close-on-exec: a program started with the inherited stderr gets
    none, and git opens /dev/null for a missing one (its start-up `sanitize_stdfds`), so the lookup fails
    quietly and lm-eval falls back to reading `.git` itself (None outside a repository). Our own writes to
    stderr, and children given a stderr of their own (`stderr=PIPE`, as torch's environment report runs its
    commands), are unaffected; lm-eval's code is not touched."""
    try:
        inherited = os.get_inheritable(2)
    except OSError:  # no stderr at all: nothing to keep quiet
        yield
        return
    os.set_inheritable(2, False)
    try:
        yield
    finally:
        os.set_inheritable(2, inherited)


def lossless(fn) -> bool:
    """Whether an AR method reproduces greedy decoding by construction: no sampling temperature, and greedy
    acceptance for the tree methods (typical acceptance is lossy)."""
    opts = getattr(fn, "options", None) or {}
    return (getattr(fn, "kind", None) == "ar" and not opts.get("temperature")
            and opts.get("acceptance", "greedy") == "greedy")


def identical_to_greedy(lms: dict[str, AccelLM], main: Target, batch_size: int) -> dict[str, dict[str, float]]:
    """{method: {task: fraction, "all": fraction}} for the lossless AR methods: of their generate_until requests,
    the fraction whose generated tokens (up to the first end token) equal greedy decoding's with the same
    model, context, length and stop strings. The `greedy` row's own outputs are the reference when it ran on that model;
    otherwise the reference is decoded here, untimed."""
    scored = {n: lm for n, lm in lms.items() if lossless(lm.fn) and lm.outputs}
    refs: dict[int, dict[tuple, list[int]]] = {}  # {id(model adapter): {(context ids, gen_len, until): tokens}}
    for name, lm in scored.items():
        if name == "greedy":
            refs.setdefault(id(_model(lm)), {}).update(kv for items in lm.outputs.values() for kv in items)
    greedy = get_method("greedy", "ar")
    out: dict[str, dict[str, float]] = {}
    for name, lm in scored.items():
        model = _model(lm)
        ref = refs.setdefault(id(model), {})
        missing = list(dict.fromkeys(k for items in lm.outputs.values() for k, _ in items if k not in ref))
        for gen_len in sorted({k[1] for k in missing}):
            keys = [k for k in missing if k[1] == gen_len]
            for i in range(0, len(keys), batch_size):
                chunk = keys[i:i + batch_size]
                stop = StopStrings.of(model.tokenizer, [k[2] for k in chunk])  # ended where the method's rows end
                ref.update(zip(chunk, greedy(model, [list(k[0]) for k in chunk], gen_len, stop=stop).tokens))
        total = [0, 0]
        for task, items in lm.outputs.items():
            same = sum(trimmed(row, model.eos_ids, k[1]) == trimmed(ref[k], model.eos_ids, k[1]) for k, row in items)
            out.setdefault(name, {})[task] = same / len(items)
            total[0] += same
            total[1] += len(items)
        out[name]["all"] = total[0] / total[1]
    return out


def _model(lm: AccelLM):
    """The adapter `lm`'s method decodes with."""
    return getattr(lm.fn, "model", None) or lm.adapter
