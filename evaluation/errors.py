"""The errors `accel eval` raises below the CLI: each carries the facts (task, method, target) the
message names, so a library caller can react to them and the CLI prints them in one line."""
from __future__ import annotations

from accel.core.errors import UserError


class UnknownEvalTaskError(UserError, ValueError):
    """A task lm-eval does not know (with `include_path`'s local tasks): ``name`` and ``close`` names."""

    def __init__(self, name: str, close: list[str]):
        self.name, self.close = name, list(close)
        hint = f"; close names: {', '.join(close)}" if close else "; list lm-eval's tasks with `lm-eval ls tasks`"
        super().__init__(f"unknown lm-eval task {name!r}{hint}")


class CannotScoreError(UserError, ValueError):
    """A loglikelihood task (multiple choice, perplexity) for a method that cannot score continuations:
    ``method``, ``target``, ``task`` and its ``output_type``, and ``why``."""

    def __init__(self, method: str, target: str, task: str = "", output_type: str = "loglikelihood", why: str = ""):
        self.method, self.target, self.task, self.output_type, self.why = method, target, task, output_type, why
        where = f" (task {task} is {output_type})" if task else ""
        super().__init__(f"method {method} on {target} cannot score {output_type}{where}: "
                         f"{why or 'use a generate_until task'}")


class DatasetUnavailableError(UserError):
    """An lm-eval task whose dataset cannot be loaded: ``task``, ``dataset`` (lm-eval's dataset_path and
    config name), whether the hub was ``unreachable`` (else a local file or config problem: ``reason``).
    ``what``: "dataset", or "metric" for an `evaluate` metric the task's code loads from the hub (mbpp's
    code_eval)."""

    def __init__(self, task: str, dataset: str, unreachable: bool, reason: str = "", what: str = "dataset"):
        self.task, self.dataset, self.unreachable, self.reason, self.what = task, dataset, unreachable, reason, what
        if unreachable:
            msg = (f"task {task}: {what} {dataset} is not reachable on the Hugging Face Hub and not in the local "
                   "cache; run once with the hub reachable (it is cached then), or use a local task (--include-path)")
        else:
            msg = f"task {task}: {what} {dataset} could not be loaded: {reason}"
        super().__init__(msg)
