"""Real prompt sets for `accel bench --prompts` (AR targets): MT-Bench, ShareGPT held-out, a jsonl.

Real prompts have no exact-match answer, so the quality score of a lossless accelerator is
whether it reproduces its base's greedy decoding: ``identical_to_greedy`` is the fraction of
prompts whose generated ids (up to and including the first end token, within gen_len) equal
greedy decoding's token for token. Greedy tree acceptance must score 1.0; anything lower is a
bug (or, for sampling methods, expected). Rows are per category (MT-Bench's eight) and ``all``.

No torch at import time: the CLI checks the source before loading a model.
"""
from __future__ import annotations

DEFAULT_LIMITS = {"mtbench": 10, "sharegpt": 80}
"""Prompts per category when --limit is not given: all 80 MT-Bench first turns, 80 ShareGPT held-out prompts."""
FILE_LIMIT = 80
QUALITY = "identical_to_greedy"


def is_prompt_set(source: str | None) -> bool:
    return bool(source)


def load_prompt_set(source: str, limit: int | None = None) -> dict[str, list[dict]]:
    """{category: [{"id", "prompt"}]}, categories in first-seen order, at most `limit` per category.

    ``sharegpt`` uses the held-out split only (the draft-head recipes train on the rest).
    """
    from accel.data.sources import prompt_records
    recs = prompt_records(source, split="held")
    if limit is None:
        limit = DEFAULT_LIMITS.get(source, FILE_LIMIT)
    groups: dict[str, list[dict]] = {}
    for r in recs:
        g = groups.setdefault(r["category"], [])
        if len(g) < limit:
            g.append({"id": r["id"], "prompt": r["prompt"]})
    return groups


def trimmed(row: list[int], eos_ids, gen_len: int) -> list[int]:
    """Generated ids up to and including the first end token, at most gen_len of them."""
    out = []
    for t in row[:gen_len]:
        out.append(int(t))
        if t in eos_ids:
            break
    return out


def identical_count(rows: list[list[int]], reference: list[list[int]], eos_ids, gen_len: int) -> int:
    return sum(trimmed(a, eos_ids, gen_len) == trimmed(b, eos_ids, gen_len) for a, b in zip(rows, reference))
