"""The long-answer task suite: answers of 47-107 tokens that span 3-7 blocks of 16.

On the short suite every answer sits in the first block, so any decoder that stops at the end
token wins by gen_len / answer length and the methods cannot be told apart (docs/long-world.md).
Here answers fill several blocks of the world's 16 (at its gen 128; median about 5), so
parallelism inside and across blocks is what a method is measured on. The short suite stays the
fast CI world; these tasks are chosen by name or by the suite name ``long`` and never join ``all``.

Every task is a counted list ``list A:B +S``: the 2-digit items from A to B in steps of S, comma
separated. The prompt is a handful of tokens and every answer token follows from a short local
rule (the item just written plus or minus S, the end token once B is written). That is what lets
a sub-million-parameter teacher reach exact answers of 16-36 items in CPU-minutes: the session-8
design (copying, reversing and summing lists given in the prompt, 6-11 step arithmetic chains)
needed the model to look items up by content across 100-token prompts, and after 38 CPU-minutes
of training five of its seven tasks were still at 0 exact (docs/long-world.md, "The pilot").

All prompts and answers are in the built-in tokenizer's vocabulary (one token per digit and
symbol, ``list`` and ``any`` are keywords), so the tokenizer and the short teachers' weights are
reused unchanged.

Scoring (``check(example, text)``): exact match of the whole normalised answer for the counted
lists, and validity for the two tasks with several valid answers: ``long-either`` (up from A or
down from B) and ``long-anystart`` (every S-th number of A..B from any of the first S).
Independent parallel unmasking breaks those (one position follows one answer, its neighbour another), which is what
the joint sampler is measured on.
"""
from __future__ import annotations

import random

from accel.data.task_base import Task, normalise

def _items(xs) -> str:
    return ",".join(str(x) for x in xs)


def _split(text: str) -> list[str]:
    t = normalise(text)
    return t.split(",") if t else []


def _progression(a: int, b: int, s: int) -> list[int]:
    return list(range(a, b + (1 if s > 0 else -1), s))


def _counted(rng: random.Random, steps: tuple[int, ...], down: bool = False) -> dict:
    """A + k*S for 16-36 items (fewer where a larger step leaves the 10-99 range first), B the last item."""
    s = rng.choice(steps)
    n = rng.randint(16, min(36, 89 // s + 1))
    lo = rng.randint(10, 99 - (n - 1) * s)
    a, b = (lo, lo + (n - 1) * s) if not down else (lo + (n - 1) * s, lo)
    step = -s if down else s
    return {"prompt": f"list {a}:{b} {'-' if down else '+'}{s}", "response": _items(_progression(a, b, step)),
            "meta": {}}


def _long_count(rng):
    return _counted(rng, (1,))


def _long_step(rng):
    return _counted(rng, (2, 3, 4, 5))


def _long_down(rng):
    return _counted(rng, (1, 2, 3, 4, 5), down=True)


def _long_either(rng):
    # 16-36 items between A < B; valid: A up to B, or B down to A (one of the two drawn as the reference)
    n = rng.randint(16, 36)
    a = rng.randint(10, 100 - n)
    b = a + n - 1
    up = rng.random() < 0.5
    ref = _progression(a, b, 1) if up else _progression(b, a, -1)
    return {"prompt": f"list any {a}:{b}", "response": _items(ref), "meta": {"a": a, "b": b}}


def _long_anystart(rng):
    # every S-th number of A..B (S 2 or 3), starting at any of the first S: S valid answers of 16-36 items each
    s = rng.choice((2, 3))
    n = rng.randint(16, min(36, 90 // s))
    a = rng.randint(10, 100 - n * s)
    b = a + n * s - 1
    return {"prompt": f"list any {a}:{b} +{s}", "response": _items(range(a + rng.randrange(s), b + 1, s)),
            "meta": {"a": a, "b": b, "s": s}}


def _exact(example, text):
    return normalise(text) == example["answer"]


def _one_of(text, answers) -> bool:
    """Whether the answer is exactly one of the valid item lists."""
    got = _split(text)
    return any(got == [str(x) for x in xs] for xs in answers)


def _valid_either(example, text):
    a, b = example["meta"]["a"], example["meta"]["b"]
    return _one_of(text, (_progression(a, b, 1), _progression(b, a, -1)))


def _valid_anystart(example, text):
    a, b, s = (example["meta"][k] for k in "abs")
    return _one_of(text, (range(start, b + 1, s) for start in range(a, a + s)))


LONG_TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("long-count", _long_count, check=_exact, description="count up by 1 from A to B (16-36 items)"),
        Task("long-step", _long_step, check=_exact, description="count up by 2-5 from A to B (16-36 items)"),
        Task("long-down", _long_down, check=_exact, description="count down by 1-5 from A to B (16-36 items)"),
        Task("long-either", _long_either, multi_answer=True, check=_valid_either,
             description="A up to B or B down to A, either is right (validity)"),
        Task("long-anystart", _long_anystart, multi_answer=True, check=_valid_anystart,
             description="every 2nd or 3rd number from A to B, starting anywhere in the first step (validity)"),
    ]
}
LONG_TASK_NAMES = tuple(LONG_TASKS)

LONG_GEN_LEN = 128
"""The long world's canvas: the longest answer (112 tokens + end) fits, and the teachers' forwards stay
cheap enough to build and judge the world in CPU-minutes (docs/long-world.md)."""
LONG_BLOCK_LEN = 16
"""The long world's block: every answer spans at least 3 blocks (median about 5)."""
