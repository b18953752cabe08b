"""The bench harness: the same prompts decoded by every method in one process, side by side.

`run_bench` is the library entry: it checks the request (`accel.decoding.plan`), loads plain model
targets (`accel.decoding.target.load`; checkpoints come described or loaded from
`accel.recipes.targets`) and `measure`s. `accel bench` calls `plan` and `measure` itself, loading
in between. `measure` resolves the defaults, lists the runs (`accel.decoding.runs`), times them
(`accel.decoding.timing`), scores them (`accel.decoding.scoring`) and returns the report dict that
`accel.decoding.report` prints, writes and plots. Numbers (docs/architecture.md, "Measuring"):
accuracy next to NFE, tokens per forward, tokens/s, speedup over the first method, tokens per
forward over the answer and, with ``sweep``, AUP over each method's knob.

"""
from __future__ import annotations

from typing import Callable

from accel.data.prompts import encode_prompt
from accel.data.tasks import resolve_tasks, score, test_split
from accel.decoding.environment import environment
from accel.decoding.plan import Plan, Request, bound_methods, plan
from accel.decoding.prompt_sets import DEFAULT_GEN_LENS, QUALITY, answer_first_turns
from accel.decoding.report import add_aup
from accel.decoding.runs import knob_info, merge_compare, method_help, sweep_runs
from accel.decoding.scoring import report_rows, score_against_greedy
from accel.decoding.target import (DEFAULT_BATCH_SIZE, Target, check_gen_len, default_limit, default_tasks,
                                   describe_model, gen_len_of, load)
from accel.decoding.timing import time_runs


def run_bench(target, methods: list[str] | None = None, tasks: list[str] | None = None,
              limit: int | None = None, gen_len: int | None = None, batch_size: int | None = None,
              progress: Callable[[int, int, str], None] | None = None, *, block_len: int | None = None,
              options: dict | None = None, compare: list | tuple = (), trust_remote_code: bool = False,
              device: str | None = None, prompt_sets: dict[str, list[dict]] | None = None,
              sweep: bool = False, prompts: str | None = None) -> dict:
    """Decodes `limit` test prompts per task with every method; returns the report dict.

    target: a `Target` (described or loaded) or a plain model TARGET string. compare: more targets whose
    default methods join the run as extra rows (renamed ``<target>/<method>`` only on a name clash).
    progress(done, total, description) is called as prompts finish.
    prompt_sets: {name: examples} decoded instead of the suite's test split (the hook for other prompt
    sources): each example is a dict with a "prompt", scored by `accel.data.tasks.score`; each name
    becomes a task column of the report. sweep: also decode every method that declares a knob at each
    of its sweep values (rows ``name@knob=value``), for the AUP curve. prompts: a real prompt set
    (`accel.decoding.prompt_sets`: mtbench, sharegpt, humaneval, a .jsonl) instead of the task suite, AR targets
    only; its categories are the rows' tasks and the quality score is ``identical_to_greedy``.
    """
    request = Request(methods=methods, tasks=tasks, limit=limit, gen_len=gen_len, block_len=block_len,
                      batch_size=batch_size, options=dict(options or {}), sweep=sweep, prompts=prompts,
                      prompt_sets=prompt_sets)
    main = target if isinstance(target, Target) else describe_model(target)
    others = [c if isinstance(c, Target) else describe_model(c) for c in compare]
    p = plan(main, request, others)

    def loaded(t: Target) -> Target:
        return t if t.adapter is not None else load(t, trust_remote_code, device)
    return measure(p, loaded(main), [loaded(o) for o in others], progress)


def measure(p: Plan, main: Target, others: list[Target],
            progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Runs a checked `plan` on its targets, loaded (`main`, and `others` in the order of its compare list)."""
    r = p.request
    prompt_sets = p.prompt_sets
    task_names = list(prompt_sets) if prompt_sets else resolve_tasks(r.tasks or default_tasks(main.adapter))
    batch_size = r.batch_size or main.default_batch_size or DEFAULT_BATCH_SIZE
    gen_len = gen_len_of(main, r.gen_len or DEFAULT_GEN_LENS.get(r.prompts))
    if r.prompts:
        if progress:
            progress(0, 1, "first turns: the target's greedy answers")
        answer_first_turns(main.adapter, prompt_sets, gen_len, batch_size)  # mtbench-turn2 only
    limit = r.limit
    if limit is None and not r.prompts:
        limit = default_limit(gen_len, main.adapter)
    chosen, compare_chosen = bound_methods(p, main, others)
    runs = [(n, fn, main) for n, fn in chosen.items()]
    for other, methods in zip(others, compare_chosen):
        runs = merge_compare(runs, other, methods)
    if r.sweep:
        runs = sweep_runs(runs)
    for name, fn, _t in runs:
        check_gen_len(gen_len, {name: fn}, p.checked)

    examples = dict(prompt_sets) if prompt_sets else {t: test_split(t, limit) for t in task_names}
    encoded: dict[int, dict[str, list[list[int]]]] = {}
    for _n, _fn, t in runs:
        tok = t.adapter.tokenizer
        if id(tok) not in encoded:
            encoded[id(tok)] = {task: [encode_prompt(tok, e["prompt"]) for e in exs] for task, exs in examples.items()}
    stats, outputs = time_runs(runs, examples, encoded, gen_len, batch_size, None if r.prompts else score, progress)
    if r.prompts:
        score_against_greedy(runs, task_names, encoded, outputs, stats, gen_len, batch_size, progress, examples)
    rows = report_rows([n for n, _fn, _t in runs], task_names, stats,
                       untimed={n for n, fn, _t in runs if not getattr(fn, "timed", True)})
    quality = "accuracy"
    if r.prompts:
        quality = QUALITY
        for row in rows:
            row[quality] = row["accuracy"]
    report = {
        "prompts": r.prompts, "quality": quality,
        "target": main.spec, "compare": [o.spec for o in others],
        "kind": main.kind, "gen_len": gen_len, "block_len": r.block_len, "limit": limit, "batch_size": batch_size,
        "tasks": task_names,
        "methods": [{"name": n, "target": t.spec, "kind": t.kind,
                     "help": method_help(fn), "timed": getattr(fn, "timed", True), **knob_info(n, fn)}
                    for n, fn, t in runs],
        "sweep": bool(r.sweep),
        **environment(main.adapter),
        "rows": rows,
    }
    add_aup(report)
    return report
