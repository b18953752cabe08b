"""Context lookup: drafts copied from the sequence itself, alone or in front of a trained drafter.

A language model's greedy output repeats itself and its prompt: names, code identifiers, list
scaffolding, whole phrases — and a 135M chat model's greedy text loops outright. Where the last few
tokens (prompt and output so far, the step's root included) occurred before, the tokens that followed
them then are a draft that costs nothing to make (prompt lookup decoding; transformers'
``generate(prompt_lookup_num_tokens=...)``, vLLM's n-gram proposer).

How far such a copy holds depends on how long the match is: after a 2-token match the next token
follows the earlier occurrence about half the time, after 16 matching tokens (a loop) nearly always and
for several tokens more (`ACCEPTANCE`, measured on SmolLM2-135M-Instruct's greedy answers with
``scripts/lookup_acceptance.py``). So the chain a match drafts is as long as the target's cost curve
(`accel.decoding.cost_curve`) makes worth it for that match length (`plan_lengths`): on a CPU, where 3
new tokens cost ~1.2 one-token forwards and 5 ~1.5, a short match drafts 2 tokens and a loop 8.

`LookupDrafter` is a `accel.decoding.tree.Drafter` that wraps another (or none): at a step where the
context has a match of at least `MIN_NGRAM` tokens it proposes the continuation of the most recent
earlier occurrence of the longest match (up to `MAX_NGRAM` tokens) as a chain; elsewhere the wrapped
drafter drafts as it would alone. Verification is the tree verifier's, so greedy acceptance stays
identical to greedy decoding.

Batch 1 only looks up (rows of a batch share one tree shape per step); at batch > 1 every step goes to
the wrapped drafter (without one, one-token steps). A wrapped drafter's ``observe`` sees every accepted
path, whoever drafted the step: Hydra++ extends its prefix state as usual, and EAGLE-3 holds the
positions of a step it did not draft and runs them through its layer with the next ones.
"""
from __future__ import annotations

import dataclasses

import torch

from accel.decoding.cost_curve import cost_at
from accel.decoding.tree import TreeSpec

MIN_NGRAM = 2
"""Shortest match that drafts."""
MAX_NGRAM = 16
"""Longest match looked up (a loop's period is rarely longer; longer matches score as 16)."""
MAX_LENGTH = 8
"""Longest chain a match drafts."""
ACCEPTANCE = {
    2: (0.539, 0.354, 0.257, 0.196, 0.157, 0.127, 0.106, 0.089),
    3: (0.657, 0.485, 0.371, 0.296, 0.240, 0.200, 0.169, 0.145),
    4: (0.751, 0.594, 0.479, 0.394, 0.331, 0.282, 0.244, 0.213),
    6: (0.819, 0.686, 0.583, 0.500, 0.431, 0.378, 0.338, 0.299),
    8: (0.874, 0.778, 0.689, 0.608, 0.542, 0.484, 0.434, 0.385),
    12: (0.923, 0.852, 0.773, 0.689, 0.617, 0.551, 0.494, 0.444),
    16: (0.979, 0.951, 0.887, 0.782, 0.713, 0.645, 0.584, 0.518),
}
"""{match length bucket (at least this many tokens): P(the continuation's first j+1 tokens are all the
target's greedy tokens), j = 0..7}, over SmolLM2-135M-Instruct's greedy answers to the 1,600 ShareGPT
prompts its draft configs self-distil (``scripts/lookup_acceptance.py data/sd-sharegpt.jsonl``; the 80
MT-Bench first turns give the same profile within a few points, docs/recipes/eagle3.md)."""


def bucket(n: int) -> int:
    """The `ACCEPTANCE` row of a match of n tokens: the largest bucket <= n."""
    return max(b for b in ACCEPTANCE if b <= max(n, min(ACCEPTANCE)))


def plan_lengths(costs: list[float] | None, acceptance: dict = ACCEPTANCE, max_length: int = MAX_LENGTH) -> dict:
    """{match bucket: chain length} with the most expected tokens per second on the cost curve `costs`
    ([c(1), c(2), ...], `accel.decoding.cost_curve`): (1 + expected accepted) / c(length + 1) per bucket.
    Without a curve, 2 tokens for every match."""
    if not costs:
        return {b: 2 for b in acceptance}
    out = {}
    for b, acc in acceptance.items():
        best, best_rate = 1, 0.0
        for n in range(1, min(max_length, len(acc)) + 1):
            rate = (1 + sum(acc[:n])) / cost_at(costs, n + 1)
            if rate > best_rate:
                best, best_rate = n, rate
        out[b] = best
    return out


class ContextIndex:
    """One row's tokens and, for every n-gram (n <= max_ngram) that has a successor, where its most recent
    occurrence's successor starts: a lookup is max_ngram dict probes, not a scan of the context."""

    def __init__(self, max_ngram: int = MAX_NGRAM):
        self.max_ngram = max_ngram
        self.tokens: list[int] = []
        self.after: dict[tuple, int] = {}

    def extend(self, tokens) -> None:
        toks, after, m = self.tokens, self.after, self.max_ngram
        for t in tokens:
            j = len(toks)  # t's position: every n-gram ending just before it now has a successor
            for n in range(1, min(m, j) + 1):
                after[tuple(toks[j - n:j])] = j
            toks.append(int(t))

    def match(self, length: int, min_ngram: int = MIN_NGRAM) -> tuple[int, list[int]]:
        """(n, the `length` tokens or fewer, at the end of the context, that followed the most recent earlier
        occurrence of the longest suffix of n >= `min_ngram` tokens); (0, []) without one."""
        toks = self.tokens
        for n in range(min(self.max_ngram, len(toks) - 1), min_ngram - 1, -1):
            start = self.after.get(tuple(toks[len(toks) - n:]))
            if start is not None:
                return n, toks[start:start + length]
        return 0, []


class LookupDrafter:
    """A Drafter: context lookup where the sequence has a match, `inner` (any Drafter, or None) elsewhere.

    lengths: {match bucket: chain length} (`plan_lengths`; default 2 tokens for every match)."""

    def __init__(self, inner=None, lengths: dict | None = None, min_ngram: int = MIN_NGRAM,
                 max_ngram: int = MAX_NGRAM):
        lengths = dict(lengths or plan_lengths(None))
        if not 1 <= min_ngram <= max_ngram or any(v < 1 for v in lengths.values()):
            raise ValueError(f"lookup lengths={lengths}, min_ngram={min_ngram}, max_ngram={max_ngram}: need chain "
                             "lengths >= 1 and 1 <= min_ngram <= max_ngram")
        self.inner, self.lengths, self.min_ngram, self.max_ngram = inner, lengths, min_ngram, max_ngram
        self.feature_layers = getattr(inner, "feature_layers", None)
        self.index: ContextIndex | None = None
        longest = max(lengths.values())
        self.chains = [TreeSpec.chain(d) for d in range(longest + 1)]  # one object per shape: buffers built once
        self.lookups = self.steps = 0  # steps drafted by lookup / all steps (for the docs' figures)

    @property
    def num_heads(self) -> int:
        return getattr(self.inner, "num_heads", len(self.chains) - 1)

    def observe(self, hidden, valid, position_ids, tokens, prefill: bool = False):
        if getattr(self.inner, "observe", None) is not None:
            self.inner.observe(hidden, valid, position_ids, tokens=tokens, prefill=prefill)
        if tokens.shape[0] != 1:
            self.index = None
            return
        row = tokens[0][valid[0]].tolist()
        if prefill:
            self.index = ContextIndex(self.max_ngram)
            self.index.extend(row)
        elif self.index is not None:
            self.index.extend(row[1:])  # row[0] is the step's root, added when the step was drafted

    def draft(self, hidden_last, root_token, tree):
        self.steps += 1
        if root_token.shape[0] == 1 and self.index is not None:
            self.index.extend([int(root_token[0])])
            n, prop = self.index.match(len(self.chains) - 1, self.min_ngram)
            prop = prop[:self.lengths[bucket(n)]] if n else []
            if prop or self.inner is None:
                self.lookups += bool(prop)
                cand = torch.tensor([[int(root_token[0]), *prop]], dtype=torch.long, device=root_token.device)
                return cand, self.chains[len(prop)]
        if self.inner is None:  # batch > 1 without a drafter: a plain one-token step
            return root_token[:, None].to(torch.long), self.chains[0]
        return self.inner.draft(hidden_last, root_token, tree)


def with_lookup(method, costs: list[float] | None = None, name: str | None = None):
    """The tree-draft row `method` (a `DecodeMethod` whose options hold a ``drafter``) with context lookup in
    front of its drafter, chain lengths planned on the cost curve `costs`: ``<name>+lookup``. Its expected
    speedup is not estimated (the planner prices the trained draft alone)."""
    lengths = plan_lengths(costs)
    opts = dict(method.options)
    opts["drafter"] = LookupDrafter(opts["drafter"], lengths)
    if "expected" in opts:
        opts["expected"] = None
    shown = ", ".join(f"{b}+: {n}" for b, n in lengths.items())
    return dataclasses.replace(method, name=name or f"{method.name}+lookup", options=opts,
                               help=f"{method.help}; where the context's last {MIN_NGRAM}+ tokens occurred before, "
                                    f"the tokens that followed them as the chain (match length: chain length "
                                    f"{shown})")
