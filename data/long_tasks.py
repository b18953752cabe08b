"""The long-answer task suite: answers of 40-112 tokens that span 3-7 blocks of 16.

On the short suite every answer sits in the first block, so any decoder that stops at the end
token wins by gen_len / answer length and the methods cannot be told apart (docs/long-world.md).
Here answers fill several blocks of the world's 16 (at its gen 128; median about 5), so
parallelism inside and across blocks is what a method is measured on. The short suite stays the
fast CI world; these tasks are chosen by name or by the suite name ``long`` and never join ``all``.

Every prompt and answer is written in the built-in tokenizer's vocabulary (one token per digit,
symbol and keyword), so the existing tokenizer is reused unchanged. Lists use ``,`` between items
so an item's boundary is a token, not a position to count, and list items are distinct 2-digit
numbers, so the next item is found by content (the one after the item just written) rather than
by counting: that is what lets a sub-million-parameter teacher learn these in CPU-minutes.

Scoring (``check(example, text)``): exact match of the worked chain's final value
(``long-arith``) or of the whole normalised answer (lists, record), and validity for the tasks
with several valid answers (``long-pick``, ``long-shuffle``): any answer meeting the constraint
is right, which independent parallel unmasking tends to break (two positions pick the same item).
"""
from __future__ import annotations

import random

from accel.data.task_base import Task, normalise, worked_chain


def _items(xs) -> str:
    return ",".join(str(x) for x in xs)


def _split(text: str) -> list[str]:
    t = normalise(text)
    return t.split(",") if t else []


def _long_arith(rng: random.Random) -> dict:
    # GSM8K-like: 6-11 steps on 2-digit values with 2-digit operands, every intermediate written. The
    # operands (10-45) keep every step inside 10-99 one way or the other, and being two digits they
    # mostly differ, so the next operand is found after the one just written
    cur = rng.randint(10, 99)
    return worked_chain(rng, cur, rng.randint(6, 11), _long_step, 10, 99)


def _long_step(rng: random.Random) -> tuple[str, int]:
    b = rng.randint(10, 45)  # the operand before the operator: the order the long suite is generated in
    return rng.choice("+-"), b


def _distinct_items(rng, lo=16, hi=36):
    """lo-hi distinct 2-digit items: each item names its own place in the list, so a model finds the
    next item by looking up the one it just wrote (an induction step) instead of counting positions,
    which a model of the teachers' size does not learn within a CPU-minutes build (the pilot's
    copy of 24-56 single digits stayed at 0 after 500 steps; docs/long-world.md)."""
    return rng.sample(range(10, 100), rng.randint(lo, hi))


def _long_copy(rng):
    xs = _distinct_items(rng)
    return {"prompt": f"copy {_items(xs)}", "response": _items(xs), "meta": {}}


def _long_reverse(rng):
    xs = _distinct_items(rng)
    return {"prompt": f"reverse {_items(xs)}", "response": _items(xs[::-1]), "meta": {}}


def _long_cumsum(rng):
    # running sums modulo 100 of 10-16 distinct 2-digit items, each written beside its item
    # ("45:45,84:29,..."), so every step reads the previous item and sum from the answer itself
    xs = _distinct_items(rng, 10, 16)
    out, s = [], 0
    for x in xs:
        s = (s + x) % 100
        out.append(f"{x}:{s}")
    return {"prompt": f"calc list {_items(xs)}", "response": ",".join(out), "meta": {"value": s}}


_FIELDS = "abcdefghjkmnpqrs"  # single-letter field names (all in the vocabulary)


def _long_record(rng):
    # the first 6-11 field names of _FIELDS, given in shuffled order; the answer lists them in that order
    names = list(_FIELDS[:rng.randint(6, 11)])
    values = {n: "".join(str(rng.randrange(10)) for _ in range(rng.randint(3, 8))) for n in names}
    shown = names[:]
    rng.shuffle(shown)
    return {"prompt": "from " + ",".join(f"{n}={values[n]}" for n in shown),
            "response": ";".join(f"{n}:{values[n]}" for n in names), "meta": {"fields": values}}


PICK_BELOW = 55


def _long_pick(rng):
    # every pool item below 55 (the rule is the task, the prompt only says "pick any"; the tokenizer has no
    # word for it), in any order: 14-32 of 28-64 distinct 2-digit items
    while True:
        pool = rng.sample(range(10, 100), rng.randint(28, 64))
        small = [p for p in pool if p < PICK_BELOW]
        if 14 <= len(small) <= 32:
            break
    rng.shuffle(small)
    return {"prompt": f"pick any from {_items(pool)}", "response": _items(small),
            "meta": {"items": [str(p) for p in pool if p < PICK_BELOW]}}


def _long_shuffle(rng):
    xs = _distinct_items(rng)
    ys = xs[:]
    rng.shuffle(ys)
    return {"prompt": f"shuffle {_items(xs)}", "response": _items(ys), "meta": {"items": _items(xs)}}


def _final_value(example, text):
    t = normalise(text)
    return "#" in t and t.rsplit("#", 1)[1] == example["answer"]


def _exact(example, text):
    return normalise(text) == example["answer"]


def _valid_pick(example, text):
    got = _split(text)
    return len(set(got)) == len(got) and set(got) == set(example["meta"]["items"])


def _valid_shuffle(example, text):
    return sorted(_split(text)) == sorted(_split(example["meta"]["items"]))


LONG_TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("long-arith", _long_arith, check=_final_value, extract=lambda t: normalise(t).rsplit("#", 1)[-1],
             description="6-11 step +/- chain of 2-digit operands on 2-digit values, every step written; answer after '#'"),
        Task("long-copy", _long_copy, check=_exact, description="repeat a list of 16-36 distinct 2-digit items"),
        Task("long-reverse", _long_reverse, check=_exact,
             description="reverse a list of 16-36 distinct 2-digit items"),
        Task("long-cumsum", _long_cumsum, check=_exact,
             description="running sums mod 100 of 10-16 2-digit items, each written as item:sum"),
        Task("long-record", _long_record, check=_exact,
             description="6-11 'f=value' fields from the prompt, written as 'f:value' in field order"),
        Task("long-pick", _long_pick, multi_answer=True, check=_valid_pick,
             description=f"every pool item below {PICK_BELOW}, in any order (validity)"),
        Task("long-shuffle", _long_shuffle, multi_answer=True, check=_valid_shuffle,
             description="any permutation of a list of 16-36 distinct 2-digit items (validity)"),
    ]
}
LONG_TASK_NAMES = tuple(LONG_TASKS)

LONG_GEN_LEN = 128
"""The long world's canvas: the longest answer (112 tokens + end) fits, and the teachers' forwards stay
cheap enough to build and judge the world in CPU-minutes (docs/long-world.md)."""
LONG_BLOCK_LEN = 16
"""The long world's block: every answer spans at least 3 blocks (median about 5)."""
