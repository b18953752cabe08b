"""`HydraDrafter`: grows a candidate tree level by level for `accel.decoding.tree.generate_tree`.

Unlike Medusa (node token = head d's c-th choice, whatever the parent), a Hydra node's token
is the c-th choice of head d *given its parent path*: head d reads h_t and the embeddings of
the root and the d-1 ancestors drafted above the node. All parents of one level go through
the head as one batch ([B, parents, d, H]), so a tree costs K small head calls per step.

Drafting is latency-bound at batch 1 (a few dozen tiny ops per level), so `draft` runs the heads
through `_FusedHeads`: every head reads h_t and the root token, so that part of every head's input
projection is one matmul for all heads (W_in·[h; e_0; e_1..] = [W_h W_0]·[h; e_0] + W_rest·e_1..),
level 1 needs no other, and each level is plain functional calls (no module dispatch).
Same weights and math as `HydraHead.forward`; the tree decoder verifies every draft anyway.

Hydra++ reads h_t from its prefix layer, which needs the hidden states of every accepted
token: the tree decoder reports them through the optional ``observe(hidden, valid,
position_ids, tokens, prefill)`` hook, and `PrefixState` keeps the layer's own KV cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from accel.decoding.gate import top1
from accel.recipes.hydra.heads import HydraHeads, PrefixState


@dataclass
class _Plan:
    """Per-depth index tensors of one tree: which parents expand, and where each child sits."""
    levels: list  # per depth d>=1: (ancestors [P, d-1] node ids below the root, first child node, end, child's index
    #                into the parents' flattened top-k [C], kmax); a depth's nodes are contiguous in TreeSpec order
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
        kmax = max(p[-1] for p in kids) + 1
        t = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
        levels.append((t([[index[q[:j]] for j in range(1, d)] for q in parents]), index[kids[0]], index[kids[-1]] + 1,
                       t([slot[p[:-1]] * kmax + p[-1] for p in kids]), kmax))
    return _Plan(levels=levels, num_nodes=len(paths))


class _FusedHeads:
    """The heads' weights laid out for drafting: [W_h W_0] of all heads stacked, per-head W_e of the
    tokens below the root, residual blocks and vocab projections."""

    def __init__(self, heads: HydraHeads):
        H = heads.hidden
        self.w_root = torch.cat([h.inp.weight[:, :2 * H] for h in heads.heads], 0).detach()  # [K*H, 2H]
        self.b_root = torch.cat([h.inp.bias for h in heads.heads], 0).detach()
        self.w_e = [h.inp.weight[:, 2 * H:].t().contiguous()[None].detach() for h in heads.heads]  # [1, (d-1)H, H]
        self.blocks = [[(b.linear.weight.detach(), b.linear.bias.detach()) for b in h.blocks] for h in heads.heads]
        self.lm = [(h.lm_head.weight.detach(), h.lm_head.bias.detach()) for h in heads.heads]

    def root_part(self, h, e0, first: int, last: int):
        """Heads first..last (1-based): their input projection of [h; the root's embedding], [B, heads, 1, H]."""
        H = h.shape[-1]
        return torch.nn.functional.linear(torch.cat([h, e0], -1), self.w_root[(first - 1) * H:last * H],
                                          self.b_root[(first - 1) * H:last * H]).view(h.shape[0], last - first + 1, 1, H)

    def level(self, d: int, h, hr, embs):
        """Head d (1-based) at every parent: h [B,1,H], hr [B,1,H] (head d's h and root part),
        embs [B,P,d-1,H] (the tokens below the root; None at d = 1) -> [B,P,V]."""
        F = torch.nn.functional
        z = hr if embs is None else torch.baddbmm(hr, embs.flatten(-2), self.w_e[d - 1].expand(h.shape[0], -1, -1))
        y = h + F.silu(z)
        for w, b in self.blocks[d - 1]:
            y = y + F.silu(F.linear(y, w, b))
        return F.linear(y, *self.lm[d - 1])


class HydraDrafter:
    """A Drafter over trained `HydraHeads` and the base model's input embedding."""

    def __init__(self, heads: HydraHeads, embed: torch.nn.Module):
        self.heads = heads.eval()
        self.embed = embed
        # a plain nn.Embedding is a table lookup: index its weight and skip the module call at every level
        self._table = embed.weight if type(embed) is torch.nn.Embedding and embed.max_norm is None else None
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
        if self.state is None:  # frozen heads: the state's fused weights and buffers serve every sequence
            self.state = PrefixState(self.heads.prefix)
        if prefill:
            self.state.reset()
        dt = self._dtype()
        self.state.push(hidden.to(dt), valid, position_ids)

    def _dtype(self):
        return next(self.heads.parameters()).dtype

    def _plan(self, tree, device) -> _Plan:
        """Built once per tree object and device (hashing the paths every step costs more than a level)."""
        key = (id(tree), device)
        hit = self._plans.get(key)
        if hit is None or hit[0] is not tree:  # the tree is kept in the entry, so a reused id() cannot alias
            if tree.max_depth > self.num_heads:
                raise ValueError(f"the tree is {tree.max_depth} levels deep but the checkpoint has {self.num_heads} "
                                 "Hydra heads; use a tree of depth <= num_heads")
            hit = self._plans[key] = (tree, plan_tree(list(tree.paths), device))
        return hit[1]

    @torch.no_grad()
    def draft(self, hidden_last, root_token, tree) -> torch.Tensor:
        """[B,H], [B] -> [B, N+1] candidate ids, node 0 = root_token."""
        h = self._head_input(hidden_last)
        plan = self._plan(tree, h.device)
        tmap = self.heads.token_map
        if self._fused is None:  # a drafter decodes with frozen heads: lay their weights out once
            self._fused = _FusedHeads(self.heads)
        fused = self._fused
        B, D = h.shape[0], tree.max_depth  # only the heads the tree reaches
        hr = fused.root_part(h, self._embed(root_token).to(h.dtype), 1, D)
        h = h[:, None]
        cand = torch.empty(B, plan.num_nodes + 1, dtype=torch.long, device=h.device)
        cand[:, 0] = root_token
        for d, (anc, start, end, flat, kmax) in enumerate(plan.levels, start=1):
            embs = self._embed(cand[:, anc]).to(h.dtype) if d > 1 else None         # [B, P, d-1, H]
            top = fused.level(d, h, hr[:, d - 1], embs).topk(kmax, dim=-1).indices   # [B, P, kmax]
            if tmap is not None:  # draft indices -> full ids: what the base verifies and the next level embeds
                top = tmap[top]
            cand[:, start:end] = top.flatten(1)[:, flat]
        return cand

    @torch.no_grad()
    def chain_levels(self, hidden_last, root_token, max_depth: int):
        """The top-1 chain one level at a time: yields (token [B], its probability under the head [B]) per
        depth, running head d only when level d is asked for (`accel.decoding.gate.GatedChain`). The same
        tokens as `draft` on `TreeSpec.chain`."""
        h = self._head_input(hidden_last)
        if self._fused is None:
            self._fused = _FusedHeads(self.heads)
        fused, tmap = self._fused, self.heads.token_map
        e0 = self._embed(root_token).to(h.dtype)
        below = []  # embeddings of the chain's tokens under the root
        for d in range(1, min(max_depth, self.num_heads) + 1):
            embs = torch.stack(below, 1)[:, None] if below else None                 # [B, 1, d-1, H]
            top, p = top1(fused.level(d, h[:, None], fused.root_part(h, e0, d, d)[:, 0], embs)[:, 0])
            tok = tmap[top] if tmap is not None else top
            yield tok, p
            below.append(self._embed(tok).to(h.dtype))

    def _head_input(self, hidden_last):
        """h_t: the prefix layer's output at the newest position (Hydra++), else the base's last hidden state."""
        if self.heads.prefix is not None:
            if self.state is None or self.state.last is None:
                raise RuntimeError("Hydra++ needs the accepted tokens' hidden states, but the tree decoder never "
                                   "called drafter.observe(); use accel.decoding.tree.generate_tree")
            return self.state.last
        return hidden_last.to(self._dtype())

    def _embed(self, ids):
        return torch.nn.functional.embedding(ids, self._table) if self._table is not None else self.embed(ids)
