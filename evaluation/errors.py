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
    """A loglikelihood task (multiple choice, perplexity) for a method that cannot score continuations."""

    def __init__(self, method: str, target: str, task: str = "", output_type: str = "loglikelihood"):
        self.method, self.target, self.task, self.output_type = method, target, task, output_type
        where = f" (task {task} is {output_type})" if task else ""
        super().__init__(f"method {method} on {target} cannot score loglikelihood{where}; use an AR model "
                         "or a generate_until task (the dLLM Monte Carlo estimate is not built yet)")
