"""Choosing the candidate tree from measured per-head top-k accuracy (Medusa's greedy rule).

acc[k][c] = P(head k's c-th ranked token is the true token). Treating heads as independent, a
node (c_1, ..., c_d) is accepted with probability prod_i acc[i-1][c_i], and since sibling
choices are distinct tokens (at most one is right), the expected number of accepted candidates
is the sum of the node probabilities. Greedy: repeatedly add the frontier node with the highest
probability until the budget is spent — the optimum under that model, because a child never
beats its parent, so the chosen set is always a valid tree.
"""
from __future__ import annotations

import heapq

import torch

from accel.decoding.tree import TreeSpec


def build_tree(acc: list[list[float]], num_nodes: int) -> TreeSpec:
    """The `num_nodes`-node tree maximising the expected accepted length under `acc` [K][topk]."""
    if not acc or not acc[0]:
        raise ValueError("build_tree needs at least one head with one measured choice")
    K, top = len(acc), len(acc[0])
    heap = [(-acc[0][c], (c,)) for c in range(top)]
    heapq.heapify(heap)
    chosen = []
    while heap and len(chosen) < num_nodes:
        negp, path = heapq.heappop(heap)
        chosen.append(path)
        d = len(path)
        if d < K:
            for c in range(top):
                heapq.heappush(heap, (negp * acc[d][c], path + (c,)))
    return TreeSpec(chosen)


def expected_accept_length(acc: list[list[float]], tree: TreeSpec) -> float:
    """1 (the base's own token) + sum over nodes of P(node's path is accepted)."""
    total = 1.0
    for path in tree.paths:
        p = 1.0
        for d, c in enumerate(path):
            p *= acc[d][c] if d < len(acc) and c < len(acc[d]) else 0.0  # a tree may go past the measured depths
        total += p
    return total


def chain_accept_length(top1: list[float]) -> float:
    """Estimated mean accepted tokens per forward of a top-1 chain: 1 + sum_k prod_{j<=k} acc_j."""
    total, p = 1.0, 1.0
    for a in top1:
        p *= a
        total += p
    return total


def accept_lengths(ranks, usable, paths=None):
    """Simulated accepted tokens per verification at every position ([B,T] long), from where the
    target's own next tokens rank in each draft step's distribution (ranks [B,T,K], usable [B,T,K]):
    the target's token plus the drafted ones a top-1 chain (paths None) or a static tree (choice
    tuples: path (c1..cd) is accepted when step j ranks the target's token c_j-th for every j <= d)
    would accept. Medusa/Hydra heads and EAGLE-3's unroll steps log it during training."""
    if paths is None:
        return 1 + (usable & (ranks == 0)).long().cumprod(-1).sum(-1)
    best = torch.zeros(ranks.shape[:2], dtype=torch.long, device=ranks.device)
    for path in paths:
        d = len(path)
        if d > ranks.shape[-1]:
            continue
        c = torch.tensor(path, device=ranks.device)
        m = (usable[..., :d] & (ranks[..., :d] == c)).all(-1)
        best = torch.where(m, torch.clamp(best, min=d), best)
    return 1 + best


def rank_metrics(ranks, usable, anchor, topk: int, top1_key, topk_key) -> dict:
    """Per-step top-1 / top-k accuracy (keys named by top1_key(k) / topk_key(k)) and the estimated
    mean accepted length of a top-1 chain at the `anchor` positions."""
    out = {}
    for k in range(ranks.shape[-1]):
        m = usable[..., k]
        if bool(m.any()):
            r = ranks[..., k][m]
            out[top1_key(k)] = float((r == 0).float().mean())
            out[topk_key(k)] = float((r < topk).float().mean())
    if bool(anchor.any()):
        out["est_accept_chain"] = float(accept_lengths(ranks, usable)[anchor].float().mean())
    return out
