"""lm-eval's tasks as `accel eval` sees them: the task manager over lm-eval's own tasks plus local YAMLs
(`include_path`), names checked with close-name suggestions, and each task's request type (so a
loglikelihood task on a dLLM fails before any model loads)."""
from __future__ import annotations

import difflib
import logging

from lm_eval.tasks import TaskManager

from accel.evaluation.errors import UnknownEvalTaskError

GENERATE = "generate_until"
"""The one request type every method serves; the others ask for loglikelihoods."""


def task_manager(include_path: str | None = None) -> TaskManager:
    """lm-eval's TaskManager with the local task folder `include_path` (its YAMLs take precedence)."""
    logging.getLogger("lm-eval").setLevel(logging.WARNING)  # its per-task INFO lines would bury the table
    return TaskManager(include_path=str(include_path) if include_path else None)


def check_tasks(tm: TaskManager, names: list[str]) -> list[str]:
    """`names` (tasks, groups or tags lm-eval knows), each checked; an unknown one names the close ones."""
    known = set(tm.all_tasks) | set(tm.all_groups) | set(tm.all_tags)
    for n in names:
        if n not in known:
            raise UnknownEvalTaskError(n, difflib.get_close_matches(n, sorted(known), n=5, cutoff=0.6))
    return list(dict.fromkeys(names))


def output_types(tm: TaskManager, names: list[str]) -> dict[str, str]:
    """{leaf task: its output type} (generate_until, loglikelihood, multiple_choice, loglikelihood_rolling)."""
    loaded = tm.load(list(names))
    return {name: task.get_config("output_type") or GENERATE for name, task in loaded["tasks"].items()}
