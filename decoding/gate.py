"""Confidence-gated chains: each step drafts only as deep as the draft's own confidence pays for.

Why. On a CPU a verification of k new tokens costs c(k) > c(1): SmolLM2-135M at two threads verifies two
tokens for ~1.10 one-token forwards and three for ~1.18, and drafting a level costs another ~5%. A fixed
chain pays that price at every step, whatever the draft thinks of its own tokens. On the 80 MT-Bench first
turns the trained drafts' top-1 probability says how likely the target is to agree (EAGLE-3: 6% accepted
below 0.1, 70% above 0.8; Hydra is over-confident: 28% at 0.5-0.6, 73% above 0.9), and a second drafted
token is accepted only ~24% of the time after an accepted first one, so at most steps it costs more than it
brings. docs/recipes/eagle3.md has the measurement.

How. `GatedChain` wraps a drafter that drafts a top-1 chain level by level: ``chain_levels(hidden_last,
root_token, max_depth)``, a generator of (token [B], probability [B]) per level, which computes a level only
when the next one is asked for (Hydra and EAGLE-3 define it). After level d it keeps the level iff the chance
that all d drafts are accepted, read from `AcceptanceTable` at the levels' probabilities, is worth the
verification's extra cost: ``reach >= lam * (c(d+1) - c(d)) / c(1)``, where lam is the tokens per c(1) the
decode has made so far (greedy's 1 at the start). It drafts level d+1 at all only if that level's expected
gain, over the probabilities the table has seen at that depth, beats its drafting cost. The first level is
always drafted: its probability is what the decision reads.

`AcceptanceTable` holds, per depth and probability bin, how often the target accepted a draft there, on
top of a prior centred on the bin's own probability (the draft is taken at its word until the decode says
otherwise). It learns from every step: a verified draft is accepted or not, and a drafted level that was not
verified is checked against the target's next token (the step's bonus token) when every level above it was
accepted, so the gate sees what it would have got at the depths it skips.

The gate counts tokens, never seconds: the same prompts give the same chains, and the output is greedy
decoding's whatever it decides (the verifier is unchanged). Batch > 1 (rows share one tree shape) drafts the
call's fixed tree with the wrapped drafter.
"""
from __future__ import annotations

import torch

from accel.decoding.cost_curve import level_seconds
from accel.decoding.tree import TreeSpec

GATED = "each step as deep as the draft's confidence pays for on this machine's cost curve"
"""How a gated chain row describes its shape (the recipes' method help)."""
BINS = 10
"""Probability bins of the acceptance table (uniform on [0, 1])."""
PRIOR = 4.0
"""Pseudo-counts of the prior in each bin (its acceptance rate is the bin's mid-point)."""
GREEDY_STEPS = 8.0
"""Pseudo-steps of greedy decoding (1 token per c(1)) that the running rate `lam` starts from."""


class AcceptanceTable:
    """P(the target accepts a draft | its depth, its probability under the draft), learnt online."""

    def __init__(self, depth: int, bins: int = BINS, prior: float = PRIOR):
        self.bins = bins
        mid = [(b + 0.5) / bins for b in range(bins)]
        self.hits = [[prior * m for m in mid] for _ in range(depth)]
        self.tries = [[prior] * bins for _ in range(depth)]
        self.seen = [[0] * bins for _ in range(depth)]  # how often each bin's probability was drafted

    def bin(self, p: float) -> int:
        return min(max(int(p * self.bins), 0), self.bins - 1)

    def rate(self, depth: int, p: float) -> float:
        """Acceptance rate at `depth` (0-based) for a draft of probability p."""
        b = self.bin(p)
        return self.hits[depth][b] / self.tries[depth][b]

    def record(self, depth: int, p: float, accepted: bool) -> None:
        b = self.bin(p)
        self.hits[depth][b] += float(accepted)
        self.tries[depth][b] += 1.0
        self.seen[depth][b] += 1

    def expected_gain(self, depth: int, reach: float, price: float) -> float:
        """E[max(0, reach * rate - price)] over the probabilities drafted at `depth` so far (the shallowest
        depth's where this one has none yet): what drafting this level is worth before its probability is
        known, the level kept only where it pays."""
        seen = next((s for s in (self.seen[d] for d in range(depth, -1, -1)) if sum(s)), None)
        weights = seen if seen is not None else [1] * self.bins
        total = float(sum(weights))
        return sum(w / total * max(0.0, reach * self.hits[depth][b] / self.tries[depth][b] - price)
                   for b, w in enumerate(weights) if w)


class GatedChain:
    """A Drafter (`accel.decoding.tree.Drafter`): the wrapped drafter's top-1 chain, cut per step where the
    draft's confidence stops paying for the verification (module docstring).

    costs: the target's cost curve [c(1), c(2), ...] in seconds (`accel.decoding.cost_curve`); level_cost:
    seconds of drafting one more level; max_depth: the deepest chain (the draft's trained depth)."""

    def __init__(self, inner, costs: list[float], level_cost: float, max_depth: int):
        if not hasattr(inner, "chain_levels"):
            raise TypeError(f"{type(inner).__name__} drafts no chain level by level (chain_levels); it cannot be gated")
        if max_depth < 1 or len(costs) < 2:
            raise ValueError(f"max_depth={max_depth}, {len(costs)} costs: a gated chain needs a depth >= 1 and c(1), c(2)")
        self.inner = inner
        self.max_depth = min(int(max_depth), len(costs) - 1)
        c1 = float(costs[0])
        self.step = [(float(costs[k]) - float(costs[k - 1])) / c1 for k in range(1, self.max_depth + 1)]
        """step[d-1]: the extra cost, in one-token forwards, of verifying d drafts instead of d-1."""
        self.level = float(level_cost) / c1
        self.table = AcceptanceTable(self.max_depth)
        self.feature_layers = getattr(inner, "feature_layers", None)
        self.chains = [TreeSpec.chain(d) for d in range(self.max_depth + 1)]  # one object per shape
        self.tokens, self.cost = GREEDY_STEPS, GREEDY_STEPS  # the running rate lam = tokens / cost
        self.depths = [0] * (self.max_depth + 1)  # steps verified at each chain length (for the docs' figures)
        self._pending = None   # this step's (drafts, probabilities), until the verifier reports
        self._awaiting = None  # (drafts, probabilities, accepted) of the last step, until its bonus token is known
        self._call_tokens = self._call_cost = 0.0

    @property
    def num_heads(self) -> int:
        return self.max_depth

    @property
    def lam(self) -> float:
        return self.tokens / self.cost

    def observe(self, hidden, valid, position_ids, tokens, prefill: bool = False):
        if getattr(self.inner, "observe", None) is not None:
            self.inner.observe(hidden, valid, position_ids, tokens=tokens, prefill=prefill)
        if prefill or tokens.shape[0] != 1:
            self._pending = self._awaiting = None
            if prefill:
                self._call_tokens = self._call_cost = 0.0
            return
        row = tokens[0][valid[0]].tolist()  # the verified step's root, then the drafts it accepted
        if self._awaiting is not None:  # the step before: its bonus token is this step's root
            self._learn(*self._awaiting, bonus=row[0])
            self._awaiting = None
        if self._pending is not None:  # the step just verified was drafted here
            drafts, probs, _ = self._pending
            self._awaiting = (drafts, probs, row[1:])
            self._pending = None
            self.tokens += len(row)  # the accepted drafts and the bonus token
            self._call_tokens += len(row)

    def _learn(self, drafts, probs, accepted, bonus) -> None:
        truth = list(accepted) + [bonus]
        for j in range(min(len(drafts), len(truth))):
            self.table.record(j, probs[j], drafts[j] == truth[j])

    def draft(self, hidden_last, root_token, tree):
        if root_token.shape[0] != 1:
            return self.inner.draft(hidden_last, root_token, tree)
        if self._awaiting is not None:
            self._learn(*self._awaiting, bonus=int(root_token[0]))
            self._awaiting = None
        lam, table = self.lam, self.table
        levels = self.inner.chain_levels(hidden_last, root_token, self.max_depth)
        drafts, probs, keep, reach = [], [], 0, 1.0
        try:
            for d in range(1, self.max_depth + 1):
                if d > 1 and table.expected_gain(d - 1, reach, lam * self.step[d - 1]) <= lam * self.level:
                    break  # drafting this level costs more than it is expected to bring
                tok, p = next(levels)
                drafts.append(int(tok[0]))
                probs.append(float(p[0]))
                r = reach * table.rate(d - 1, probs[-1])
                if r < lam * self.step[d - 1]:
                    break
                keep, reach = d, r
        finally:
            levels.close()
        cost = 1.0 + sum(self.step[:keep]) + self.level * len(drafts)
        self.cost += cost
        self._call_cost += cost
        self.depths[keep] += 1
        self._pending = (drafts, probs, cost)
        cand = torch.tensor([[int(root_token[0]), *drafts[:keep]]], dtype=torch.long, device=root_token.device)
        return cand, self.chains[keep]

    def modeled_speedup(self) -> float | None:
        """Greedy's time over this decode's on the cost curve, for the steps it took: tokens per modeled one-token
        forward (each step priced c(length + 1) / c(1) plus its drafted levels) since the last prefill. It prices
        the decode's own acceptance, so measured against the wall clock it checks the cost curve, not a forecast."""
        cost = self._call_cost - (self._pending[2] if self._pending is not None else 0.0)  # the last step: never observed
        return self._call_tokens / cost if cost > 0 else None


def top1(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(argmax [B], its softmax probability [B]) of draft logits [B, V]: what `chain_levels` yields per level
    (before any draft-to-target id map)."""
    x = logits.float()
    best, idx = x.max(-1)
    return idx, torch.exp(best - torch.logsumexp(x, -1))


def gate_chain(make_drafter, tree, plan: dict | None, max_depth: int) -> GatedChain | None:
    """A `GatedChain` over a new ``make_drafter()`` (each row its own, so rows' acceptance tables never mix)
    where `tree` is a chain and a cost-curve `plan` (`accel.decoding.cost_curve.plan_shapes`) prices its
    levels; None for a tree, or without a plan."""
    if plan is None or tree.num_nodes != tree.max_depth or tree.num_nodes == 0:
        return None
    return GatedChain(make_drafter(), plan["costs"], level_seconds(plan), max_depth)


def innermost(drafter):
    """The drafter under any wrappers (context lookup, a gate): the one holding the trained weights."""
    while hasattr(drafter, "inner") and drafter.inner is not None:
        drafter = drafter.inner
    return drafter
