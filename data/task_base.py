"""The task type both suites share (`accel.data.tasks`, `accel.data.long_tasks`).

Apart from the suites so the long suite can import it without a cycle through `tasks`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable


def normalise(text: str) -> str:
    """A response as scored: surrounding and inner whitespace dropped."""
    return text.strip().replace(" ", "")


@dataclass(frozen=True)
class Task:
    name: str
    make: Callable[[random.Random], dict]
    """Draws one example: {"prompt", "response", "meta"}."""
    multi_answer: bool = False
    """True when many responses are correct and scoring checks validity."""
    description: str = ""
    check: Callable[[dict, str], bool] | None = None
    """check(example, text) -> correct? (None: the short suite's rules in `tasks.score`)."""
    extract: Callable[[str], str] | None = None
    """The scored part of a response (None: the short suite's rules; long tasks: the normalised text)."""
