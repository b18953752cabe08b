"""The built-in synthetic task suite: seeded generators, answer extraction and scoring.

Tasks are deliberately short and digit-aligned so that a ~1M-parameter model trained for
minutes on a CPU solves them (the README, "The built-in world"): what matters is that a decoding
speedup is measured against a teacher that is actually right.

Every example is ``{"task", "prompt", "response", "answer", "meta"}`` where ``prompt`` is
the user text (the chat template is applied by the tokenizer helpers), ``response`` the
reference output (worked answer for arithmetic) and ``answer`` what scoring compares.
Tasks with several valid answers (``shuffle``, ``pick3``) are scored by validity.

The long-answer suite (`accel.data.long_tasks`, answers of 64-256 tokens) shares the seeding,
splits and scoring entry points here but is its own suite: ``all`` stays the short one.
"""
from __future__ import annotations

import hashlib
import random

from accel.core.errors import UserError
from accel.data.long_tasks import LONG_TASK_NAMES, LONG_TASKS
from accel.data.task_base import Task, normalise, worked_chain

SPLITS = ("train", "test")
SUITES = ("all", "long")
"""Suite names `resolve_tasks` expands: 'all' is the short suite (the fast CI world), 'long' the
long-answer suite (`accel.data.long_tasks`)."""


def _digits(rng: random.Random, lo: int, hi: int) -> list[int]:
    return [rng.randrange(10) for _ in range(rng.randint(lo, hi))]


def _s(xs) -> str:
    return "".join(str(x) for x in xs)


def _arith(rng):
    # a two-step chain kept within 0..99, GSM8K-style worked answer, final answer after '#'.
    return worked_chain(rng, rng.randint(10, 99), 2, lambda r: (r.choice("+-"), r.randint(1, 9)), 0, 99)


def _copy(rng):
    xs = _digits(rng, 3, 7)
    return {"prompt": f"copy {_s(xs)}", "response": _s(xs), "meta": {}}


def _reverse(rng):
    xs = _digits(rng, 3, 7)
    return {"prompt": f"reverse {_s(xs)}", "response": _s(xs[::-1]), "meta": {}}


def _sort(rng):
    xs = _digits(rng, 3, 7)
    return {"prompt": f"sort {_s(xs)}", "response": _s(sorted(xs)), "meta": {}}


def _insert(rng):
    xs = _digits(rng, 3, 6)
    i, v = rng.randint(0, len(xs)), rng.randrange(10)
    return {"prompt": f"insert {v} at {i} in {_s(xs)}", "response": _s(xs[:i] + [v] + xs[i:]), "meta": {}}


def _remove(rng):
    xs = _digits(rng, 3, 7)
    i = rng.randrange(len(xs))
    return {"prompt": f"remove {i} from {_s(xs)}", "response": _s(xs[:i] + xs[i + 1:]), "meta": {}}


def _replace(rng):
    xs = _digits(rng, 3, 7)
    i, v = rng.randrange(len(xs)), rng.randrange(10)
    return {"prompt": f"replace {i} with {v} in {_s(xs)}", "response": _s(xs[:i] + [v] + xs[i + 1:]), "meta": {}}


def _shuffle(rng):
    xs = _digits(rng, 3, 6)
    ys = xs[:]
    rng.shuffle(ys)
    return {"prompt": f"shuffle {_s(xs)}", "response": _s(ys), "meta": {"items": _s(xs)}}


def _pick3(rng):
    pool = rng.sample(range(10), rng.randint(4, 7))
    pick = rng.sample(pool, 3)
    return {"prompt": f"pick 3 from {_s(pool)}", "response": _s(pick), "meta": {"items": _s(pool)}}


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("arith", _arith, description="two-step +/- chain with a worked answer; answer after '#'"),
        Task("copy", _copy, description="repeat a digit list"),
        Task("reverse", _reverse, description="reverse a digit list"),
        Task("sort", _sort, description="sort a digit list ascending"),
        Task("insert", _insert, description="insert a digit at a 0-based index"),
        Task("remove", _remove, description="remove the digit at a 0-based index"),
        Task("replace", _replace, description="replace the digit at a 0-based index"),
        Task("shuffle", _shuffle, multi_answer=True, description="any permutation of the list (validity)"),
        Task("pick3", _pick3, multi_answer=True, description="any 3 distinct digits of the pool (validity)"),
    ]
}
TASK_NAMES = tuple(TASKS)
MULTI_ANSWER_TASKS = tuple(n for n, t in TASKS.items() if t.multi_answer)
ALL_TASKS: dict[str, Task] = {**TASKS, **LONG_TASKS}
"""Every task either suite defines, by name (generation and scoring look names up here)."""
LONG_MULTI_ANSWER_TASKS = tuple(n for n in LONG_TASK_NAMES if LONG_TASKS[n].multi_answer)


class UnknownTaskError(UserError, ValueError):
    pass


def resolve_tasks(names: list[str] | tuple[str, ...] | None) -> list[str]:
    """Validates task names with a helpful error; 'all' (or empty) is the short suite, 'long' the
    long-answer suite, and either may be mixed with single task names."""
    if not names:
        return list(TASK_NAMES)
    out = []
    for n in names:
        if n == "all":
            out += TASK_NAMES
        elif n == "long":
            out += LONG_TASK_NAMES
        elif n in ALL_TASKS:
            out.append(n)
        else:
            raise UnknownTaskError(f"unknown task {n!r}; choose from: {', '.join(TASK_NAMES)} (or 'all'), "
                                   f"or the long suite: {', '.join(LONG_TASK_NAMES)} (or 'long')")
    return list(dict.fromkeys(out))


def _rng(task: str, split: str, seed: int) -> random.Random:
    # stable across Python versions and processes (no hash randomisation)
    key = hashlib.sha256(f"{task}/{split}/{seed}".encode()).hexdigest()
    return random.Random(int(key[:16], 16))


def generate(task: str, split: str, n: int, seed: int = 0) -> list[dict]:
    """n deterministic examples. Test prompts never appear in the train split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if task in SUITES:
        raise UnknownTaskError(f"generate() takes one task name, not the suite {task!r}")
    (name,) = resolve_tasks([task])
    t = ALL_TASKS[name]
    out, seen = [], set()
    if split == "train":
        seen = {e["prompt"] for e in generate(task, "test", _TEST_SIZE, seed)}
    rng = _rng(name, split, seed)
    tries = 0
    while len(out) < n:
        ex = t.make(rng)
        tries += 1
        if ex["prompt"] in seen and tries < 100 * n:
            continue
        if split == "test":
            seen.add(ex["prompt"])
        ex.update(task=name, answer=extract_answer(name, ex["response"]))
        out.append(ex)
    return out


_TEST_SIZE = 200
"""Size of the canonical test split; train examples never repeat one of its prompts."""


def test_split(task: str, n: int | None = None, seed: int = 0) -> list[dict]:
    n = _TEST_SIZE if n is None else min(n, _TEST_SIZE)
    return generate(task, "test", _TEST_SIZE, seed)[:n]


def mixture(split: str, n_per_task: int, tasks=None, seed: int = 0) -> list[dict]:
    """Examples of every task interleaved deterministically."""
    names = resolve_tasks(tasks)
    per = [generate(t, split, n_per_task, seed) for t in names]
    return [ex for group in zip(*per) for ex in group]


def extract_answer(task: str, text: str) -> str:
    """The scored part of a response: after the last '#' for arith, else the digits."""
    t = ALL_TASKS.get(task)
    if t is not None and t.check is not None:
        return t.extract(text) if t.extract else normalise(text)
    text = normalise(text)
    if task == "arith":
        return text.rsplit("#", 1)[1] if "#" in text else ""
    return "".join(ch for ch in text if ch.isdigit())


def score(example: dict, text: str) -> bool:
    """Exact match of the extracted answer, or validity for several-answer tasks."""
    task = example["task"]
    t = ALL_TASKS.get(task)
    if t is not None and t.check is not None:
        return bool(t.check(example, text))
    got = extract_answer(task, text)
    if task == "shuffle":
        return sorted(got) == sorted(example["meta"]["items"])
    if task == "pick3":
        pool = example["meta"]["items"]
        return len(got) == 3 and len(set(got)) == 3 and all(c in pool for c in got)
    return got == example["answer"]
