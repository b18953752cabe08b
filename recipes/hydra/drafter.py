"""`HydraDrafter`: grows a candidate tree level by level for `accel.decoding.tree.generate_tree`.

Unlike Medusa (node token = head d's c-th choice, whatever the parent), a Hydra node's token
is the c-th choice of head d *given its parent path*: head d reads h_t and the embeddings of
the root and the d-1 ancestors drafted above the node. All parents of one level go through
the head as one batch ([B, parents, d, H]), so a tree costs K small head calls per step.

Drafting is latency-bound at batch 1 (a few dozen tiny ops per level), so `draft` runs the heads
through `_FusedHeads`: the h_t part of every head's input projection is one matmul for all heads
(W_in·[h; e] = W_h·h + W_e·e), and each level is plain functional calls (no module dispatch).
Same weights and math as `HydraHead.forward`; the tree decoder verifies every draft anyway.

Hydra++ reads h_t from its prefix layer, which needs the hidden states of every accepted
token: the tree decoder reports them through the optional ``observe(hidden, valid,
position_ids, tokens, prefill)`` hook, and `PrefixState` keeps the layer's own KV cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from accel.recipes.hydra.heads import HydraHeads, PrefixState


@dataclass
class _Plan:
    """Per-depth index tensors of one tree: which parents expand, and where each child sits."""
    levels: list  # per depth d>=1: (ancestors [P, d] node ids root..parent, child nodes [C], child parent slot [C],
    #                child choice [C], kmax)
    num_nodes: int


def plan_tree(paths: list[tuple[int, ...]], device) -> _Plan:
    """Paths in TreeSpec order (sorted by depth, then choices): node i+1 = paths[i]."""
    index = {p: i + 1 for i, p in enumerate(paths)}
    index[()] = 0
    depth = max((len(p) for p in paths), default=0)
    levels = []
    for d in range(1, depth + 1):
        kids = [p for p in paths if len(p) == d]
        parents = list(dict.fromkeys(p[:-1] for p in kids))
        slot = {q: i for i, q in enumerate(parents)}
        anc = [[index[q[:j]] for j in range(d)] for q in parents]
        t = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
        levels.append((t(anc), t([index[p] for p in kids]), t([slot[p[:-1]] for p in kids]),
                       t([p[-1] for p in kids]), max(p[-1] for p in kids) + 1))
    return _Plan(levels=levels, num_nodes=len(paths))


class _FusedHeads:
    """The heads' weights laid out for drafting: all W_h stacked, per-head W_e and residual blocks."""

    def __init__(self, heads: HydraHeads):
        H = heads.hidden
        self.w_h = torch.cat([h.inp.weight[:, :H] for h in heads.heads], 0)  # [K*H, H]
        self.b_h = torch.cat([h.inp.bias for h in heads.heads], 0)
        self.w_e = [h.inp.weight[:, H:] for h in heads.heads]
        self.blocks = [[(b.linear.weight, b.linear.bias) for b in h.blocks] for h in heads.heads]
        self.lm = [(h.lm_head.weight, h.lm_head.bias) for h in heads.heads]

    def level(self, d: int, h, hw, embs):
        """Head d (1-based) at every parent: h [B,H], hw [B,K,H] (W_h·h + b), embs [B,P,d,H] -> [B,P,V]."""
        F = torch.nn.functional
        y = h[:, None] + F.silu(F.linear(embs.flatten(-2), self.w_e[d - 1]) + hw[:, d - 1, None])
        for w, b in self.blocks[d - 1]:
            y = y + F.silu(F.linear(y, w, b))
        return F.linear(y, *self.lm[d - 1])


class HydraDrafter:
    """A Drafter over trained `HydraHeads` and the base model's input embedding."""

    def __init__(self, heads: HydraHeads, embed: torch.nn.Module):
        self.heads = heads.eval()
        self.embed = embed
        self.state: PrefixState | None = None
        self._plans: dict = {}
        self._fused: _FusedHeads | None = None

    @property
    def num_heads(self) -> int:
        return self.heads.num_heads

    @torch.no_grad()
    def observe(self, hidden, valid, position_ids, tokens, prefill: bool = False):
        """Newly accepted tokens (ids [B,q]) and their base hidden states ([B,q,H], valid [B,q]).

        Only Hydra++ uses them: the hidden states extend its prefix layer's KV cache.
        """
        if self.heads.prefix is None:
            return
        if prefill or self.state is None:
            self.state = PrefixState(self.heads.prefix)
        dt = self._dtype()
        self.state.push(hidden.to(dt), valid, position_ids)

    def _dtype(self):
        return next(self.heads.parameters()).dtype

    def _plan(self, tree, device) -> _Plan:
        key = (tuple(tree.paths), str(device))
        if key not in self._plans:
            if tree.max_depth > self.num_heads:
                raise ValueError(f"the tree is {tree.max_depth} levels deep but the checkpoint has {self.num_heads} "
                                 "Hydra heads; use a tree of depth <= num_heads")
            self._plans[key] = plan_tree(list(tree.paths), device)
        return self._plans[key]

    @torch.no_grad()
    def draft(self, hidden_last, root_token, tree) -> torch.Tensor:
        """[B,H], [B] -> [B, N+1] candidate ids, node 0 = root_token."""
        if self.heads.prefix is not None:
            if self.state is None or self.state.last is None:
                raise RuntimeError("Hydra++ needs the accepted tokens' hidden states, but the tree decoder never "
                                   "called drafter.observe(); use accel.decoding.tree.generate_tree")
            h = self.state.last
        else:
            h = hidden_last.to(self._dtype())
        plan = self._plan(tree, h.device)
        if self._fused is None:  # a drafter decodes with frozen heads: lay their weights out once
            self._fused = _FusedHeads(self.heads)
        fused = self._fused
        B = h.shape[0]
        hw = torch.nn.functional.linear(h, fused.w_h, fused.b_h).view(B, self.num_heads, -1)
        cand = torch.zeros(B, plan.num_nodes + 1, dtype=torch.long, device=h.device)
        cand[:, 0] = root_token
        for d, (anc, kids, slot, choice, kmax) in enumerate(plan.levels, start=1):
            embs = self.embed(cand[:, anc]).to(h.dtype)                              # [B, P, d, H]
            top = fused.level(d, h, hw, embs).topk(kmax, dim=-1).indices             # [B, P, kmax]
            cand[:, kids] = top[:, slot, choice]
        return cand
