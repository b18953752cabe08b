"""How far a context-lookup draft holds, by match length: the table `accel.decoding.lookup.ACCEPTANCE`.

    python scripts/lookup_acceptance.py data/sd-sharegpt.jsonl [--max-rows N]

Reads a jsonl of a target's greedy answers (``response_ids``; ``prompt_ids`` too where the rows have them,
e.g. the output of ``accel data self-distill``) and replays each answer as greedy decoding emits it: after
each token, the context's longest earlier match (`ContextIndex.match`, the same lookup the drafter makes)
proposes up to 8 tokens, and the script counts how many of them are the answer's next tokens. Per match
length bucket it prints how many steps had such a match and P(the first j+1 proposed tokens all hold),
j = 0..7, in the form `ACCEPTANCE` takes. Also the share of steps with any match.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

from accel.decoding.lookup import ACCEPTANCE, MIN_NGRAM, ContextIndex, bucket

DEPTH = 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="jsonl with response_ids (and optionally prompt_ids) per row")
    ap.add_argument("--max-rows", type=int, default=None)
    a = ap.parse_args()
    held = defaultdict(lambda: [0] * DEPTH)
    steps, matched = 0, defaultdict(int)
    with open(a.data) as f:
        for i, line in enumerate(f):
            if a.max_rows is not None and i >= a.max_rows:
                break
            row = json.loads(line)
            resp = row["response_ids"]
            ix = ContextIndex()
            ix.extend(row.get("prompt_ids") or [])
            for t, tok in enumerate(resp[:-1]):
                ix.extend([tok])  # the step's root: emitted, the lookup drafts what follows it
                steps += 1
                n, prop = ix.match(DEPTH, MIN_NGRAM)
                if not n:
                    continue
                b = bucket(n)
                matched[b] += 1
                for j, x in enumerate(prop):
                    if t + 1 + j >= len(resp) or resp[t + 1 + j] != x:
                        break
                    held[b][j] += 1
    total = sum(matched.values())
    print(f"{steps} steps, {total} with a match of >= {MIN_NGRAM} tokens ({total / max(1, steps):.1%})")
    print("ACCEPTANCE = {")
    for b in sorted(ACCEPTANCE):
        if matched[b]:
            probs = ", ".join(f"{c / matched[b]:.3f}" for c in held[b])
            print(f"    {b}: ({probs}),  # {matched[b]} steps")
    print("}")


if __name__ == "__main__":
    main()
