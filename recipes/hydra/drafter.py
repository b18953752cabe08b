"""`HydraDrafter`: grows a candidate tree level by level for `accel.decoding.tree.generate_tree`.

Unlike Medusa (node token = head d's c-th choice, whatever the parent), a Hydra node's token
is the c-th choice of head d *given its parent path*: head d reads h_t and the embeddings of
the root and the d-1 ancestors drafted above the node. All parents of one level go through
the head as one batch ([B, parents, d, H]), so a tree costs K small head calls per step.

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


class HydraDrafter:
    """A Drafter over trained `HydraHeads` and the base model's input embedding."""

    def __init__(self, heads: HydraHeads, embed: torch.nn.Module):
        self.heads = heads.eval()
        self.embed = embed
        self.state: PrefixState | None = None
        self._plans: dict = {}

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
        B = h.shape[0]
        cand = torch.zeros(B, plan.num_nodes + 1, dtype=torch.long, device=h.device)
        cand[:, 0] = root_token
        for d, (anc, kids, slot, choice, kmax) in enumerate(plan.levels, start=1):
            embs = self.embed(cand[:, anc]).to(h.dtype)                      # [B, P, d, H]
            logits = self.heads.heads[d - 1](h[:, None].expand(B, anc.shape[0], h.shape[-1]), embs)
            top = logits.topk(kmax, dim=-1).indices                          # [B, P, kmax]
            cand[:, kids] = top[:, slot, choice]
        return cand
