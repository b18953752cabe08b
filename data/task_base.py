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


def worked_chain(rng: random.Random, start: int, steps: int, draw: Callable[[random.Random], tuple[str, int]],
                 lo: int, hi: int) -> dict:
    """An arithmetic chain with a GSM8K-style worked answer (``a+b=c;...;#final``), kept within [lo, hi].

    `draw(rng)` returns one step's (op, operand): each suite draws them in its own order, and that
    order must not change (the built-in teachers were trained on the examples it produces).
    """
    cur, text, lines = start, str(start), []
    for _ in range(steps):
        op, b = draw(rng)
        if op == "+" and cur + b > hi:
            op = "-"
        if op == "-" and cur - b < lo:
            op = "+"
        new = cur + b if op == "+" else cur - b
        lines.append(f"{cur}{op}{b}={new}")
        text += f"{op}{b}"
        cur = new
    return {"prompt": f"calc {text}", "response": ";".join(lines) + f";#{cur}", "meta": {"value": cur}}
