"""Real prompt sets for `accel bench --prompts` (AR targets): MT-Bench, ShareGPT held-out, HumanEval, a jsonl.

``mtbench-turn2`` is MT-Bench's second turns, as the papers score them: each question's first turn,
the target's own greedy answer to it (generated once, untimed, by `answer_first_turns`), then the
second turn — every method continues the same conversation.

``humaneval`` is HumanEval's 164 prompts (one category), the contexts `accel eval --tasks humaneval`
decodes, at its answer length (512) unless --gen-len says otherwise, each row ending at HumanEval's stop
strings as in `accel eval` (for the methods that check them, `accel.decoding.stop`): with `accel eval --chat`
(the bench always applies the chat template) both decode the same token ids to the same length.

Real prompts have no exact-match answer, so the quality score of a lossless accelerator is
whether it reproduces its base's greedy decoding: ``identical_to_greedy`` is the fraction of
prompts whose generated ids (up to and including the first end token, within gen_len) equal
greedy decoding's token for token. Greedy tree acceptance must score 1.0; anything lower is a
bug (or, for sampling methods, expected). Rows are per category (MT-Bench's eight) and ``all``.

No torch at import time: the CLI checks the source before loading a model.
"""
from __future__ import annotations

from accel.data.sources import HUMANEVAL, HUMANEVAL_GEN_LEN, prompt_records

TURN2 = "mtbench-turn2"
DEFAULT_LIMITS = {"mtbench": 10, TURN2: 10, "sharegpt": 80, HUMANEVAL: 164}
"""Prompts per category when --limit is not given: all 80 MT-Bench turns, 80 ShareGPT held-out prompts,
all 164 HumanEval problems."""
DEFAULT_GEN_LENS = {HUMANEVAL: HUMANEVAL_GEN_LEN}
"""gen_len when --gen-len is not given, for the sets with an answer length of their own (`accel eval`'s)."""
FILE_LIMIT = 80
QUALITY = "identical_to_greedy"


def is_prompt_set(source: str | None) -> bool:
    return bool(source)


def load_prompt_set(source: str, limit: int | None = None) -> dict[str, list[dict]]:
    """{category: [{"id", "prompt"}]}, categories in first-seen order, at most `limit` per category.

    ``sharegpt`` uses the held-out split only (the draft-head recipes train on the rest).
    """
    turn2 = source == TURN2
    recs = prompt_records("mtbench" if turn2 else source, split="held")
    if limit is None:
        limit = DEFAULT_LIMITS.get(source, FILE_LIMIT)
    groups: dict[str, list[dict]] = {}
    for r in recs:
        if turn2 and len(r.get("turns") or ()) < 2:
            continue
        g = groups.setdefault(r["category"], [])
        if len(g) < limit:
            g.append({"id": r["id"], "prompt": r["prompt"], **({"turns": list(r["turns"][:2])} if turn2 else {}),
                      **({"stop": r["stop"]} if r.get("stop") else {})})
    return groups


def answer_first_turns(adapter, groups: dict[str, list[dict]], gen_len: int, batch_size: int) -> int:
    """Turns second-turn examples into conversations: [turn 1, the adapter's greedy answer, turn 2].

    Returns how many were answered (0 for sets without second turns). The answer is cut at its first end
    token and at gen_len, decoded to text as a chat would show it.
    """
    from accel.data.prompts import encode_prompt
    from accel.decoding.ar import generate_greedy
    todo = [e for exs in groups.values() for e in exs if "turns" in e and isinstance(e["prompt"], str)]
    for i in range(0, len(todo), batch_size):
        batch = todo[i:i + batch_size]
        res = generate_greedy(adapter, [encode_prompt(adapter.tokenizer, e["turns"][0]) for e in batch], gen_len)
        for e, row in zip(batch, res.tokens):
            answer = adapter.tokenizer.decode([t for t in trimmed(row, adapter.eos_ids, gen_len)
                                               if t not in adapter.eos_ids], skip_special_tokens=True)
            e["prompt"] = [{"role": "user", "content": e["turns"][0]}, {"role": "assistant", "content": answer},
                           {"role": "user", "content": e["turns"][1]}]
    return len(todo)


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
