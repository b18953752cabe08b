"""The long-answer task suite: answers of 48-128 tokens that span 3-8 blocks of 16.

On the short suite every answer sits in the first block, so any decoder that stops at the end
token wins by gen_len / answer length and the methods cannot be told apart (docs/long-world.md).
Here answers fill 3-8 blocks of the world's 16 (at its gen 128), so parallelism inside and across
blocks is what a method is measured on. The short suite stays the fast CI world; these tasks are chosen by name or by the
suite name ``long`` and never join ``all``.

Every prompt and answer is written in the built-in tokenizer's vocabulary (one token per digit,
symbol and keyword), so the existing tokenizer is reused unchanged. Lists use ``,`` between items
so an item's boundary is a token, not a position to count.

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
    # GSM8K-like: 4-9 steps on 3-digit values with 2-digit operands, every intermediate written
    cur = rng.randint(100, 999)
    return worked_chain(rng, cur, rng.randint(4, 9), _long_step, 100, 999)


def _long_step(rng: random.Random) -> tuple[str, int]:
    b = rng.randint(10, 99)  # the operand before the operator: the order the long suite was generated in
    return rng.choice("+-"), b


def _digit_list(rng, lo=24, hi=56):
    return [rng.randrange(10) for _ in range(rng.randint(lo, hi))]


def _long_copy(rng):
    xs = _digit_list(rng)
    return {"prompt": f"copy {_items(xs)}", "response": _items(xs), "meta": {}}


def _long_reverse(rng):
    xs = _digit_list(rng)
    return {"prompt": f"reverse {_items(xs)}", "response": _items(xs[::-1]), "meta": {}}


def _long_sort(rng):
    xs = _digit_list(rng)
    return {"prompt": f"sort {_items(xs)}", "response": _items(sorted(xs)), "meta": {}}


def _long_dedupe(rng):
    # k distinct 2-digit items, some repeated later; keep the first occurrence of each, in order
    k = rng.randint(16, 36)
    distinct = rng.sample(range(10, 100), k)
    xs = distinct[:]
    for _ in range(rng.randint(2, max(2, k // 3))):
        v = rng.choice(distinct)
        xs.insert(rng.randint(xs.index(v) + 1, len(xs)), v)
    return {"prompt": f"distinct {_items(xs)}", "response": _items(distinct), "meta": {}}


def _long_cumsum(rng):
    # running sums of a digit list; 16-32 items keeps the answer (1-3 digit sums) within 128 tokens
    xs = _digit_list(rng, 16, 32)
    sums, s = [], 0
    for x in xs:
        s += x
        sums.append(s)
    return {"prompt": f"calc list {_items(xs)}", "response": _items(sums), "meta": {}}


_FIELDS = "abcdefghjkmnpqrs"  # single-letter field names (all in the vocabulary)


def _long_record(rng):
    # a record of 6-11 fields given in shuffled order; the answer lists them in alphabetical order
    names = sorted(rng.sample(_FIELDS, rng.randint(6, 11)))
    values = {n: "".join(str(rng.randrange(10)) for _ in range(rng.randint(3, 8))) for n in names}
    shown = names[:]
    rng.shuffle(shown)
    return {"prompt": "from " + ",".join(f"{n}={values[n]}" for n in shown),
            "response": ";".join(f"{n}:{values[n]}" for n in names), "meta": {"fields": values}}


def _long_pick(rng):
    # N distinct items of a pool: any N distinct pool members in any order are right
    n = rng.randint(16, 36)
    pool = rng.sample(range(10, 100), min(89, n + rng.randint(4, 20)))
    return {"prompt": f"pick {n} from {_items(pool)}", "response": _items(rng.sample(pool, n)),
            "meta": {"items": [str(p) for p in pool], "n": n}}


def _long_shuffle(rng):
    xs = _digit_list(rng)
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
    pool = set(example["meta"]["items"])
    return len(got) == example["meta"]["n"] and len(set(got)) == len(got) and all(g in pool for g in got)


def _valid_shuffle(example, text):
    return sorted(_split(text)) == sorted(_split(example["meta"]["items"]))


LONG_TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("long-arith", _long_arith, check=_final_value, extract=lambda t: normalise(t).rsplit("#", 1)[-1],
             description="4-9 step +/- chain on 3-digit values, every step written; answer after '#'"),
        Task("long-copy", _long_copy, check=_exact, description="repeat a list of 24-56 digits"),
        Task("long-reverse", _long_reverse, check=_exact, description="reverse a list of 24-56 digits"),
        Task("long-sort", _long_sort, check=_exact, description="sort a list of 24-56 digits ascending"),
        Task("long-dedupe", _long_dedupe, check=_exact,
             description="drop repeated 2-digit items, keep first occurrences in order (16-36 left)"),
        Task("long-cumsum", _long_cumsum, check=_exact, description="running sums of a list of 16-32 digits"),
        Task("long-record", _long_record, check=_exact,
             description="6-11 'f=value' fields from the prompt, written as 'f:value' in field order"),
        Task("long-pick", _long_pick, multi_answer=True, check=_valid_pick,
             description="any N (16-36) distinct items of the pool (validity)"),
        Task("long-shuffle", _long_shuffle, multi_answer=True, check=_valid_shuffle,
             description="any permutation of a list of 24-56 digits (validity)"),
    ]
}
LONG_TASK_NAMES = tuple(LONG_TASKS)

LONG_GEN_LEN = 128
"""The long world's canvas: the longest answer (112 tokens + end) fits, and the teachers' forwards stay
cheap enough to build and judge the world in CPU-minutes (docs/long-world.md)."""
LONG_BLOCK_LEN = 16
"""The long world's block: every answer spans at least 3 blocks (median about 5)."""
