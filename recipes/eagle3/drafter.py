"""`Eagle3Drafter`: drafts a candidate tree for `accel.decoding.tree.generate_tree`.

It asks the verifier for three of the target's hidden states (``feature_layers``) and gets, via
``observe``, their values at every accepted position. Each `draft` call first pushes those
positions through the draft layer (its own KV cache, `DraftState`), pairing each position's
features with the token that followed it — the last one with the new root, known only now —
and then grows the tree level by level: a node at depth d feeds its token and its parent's
layer output to the layer at position p+d, attending the cache plus its tree ancestors (the
shape the training-time test trained), and its top-k draft tokens (`kernels.draft_topk`, d2t
applied) become its children. Tree nodes' keys are dropped after the step: the accepted ones
come back with the target's own features through ``observe``.

`build_tree` / `expected_accept_length` choose the static tree from measured per-step top-k
accuracies (Medusa's greedy rule, the same as medusa.tree_build; kept local because recipes do
not import each other).
"""
from __future__ import annotations

import heapq

import torch

from accel.decoding.tree import TreeSpec
from accel.recipes.eagle3.kernels import draft_topk
from accel.recipes.eagle3.model import DraftState, Eagle3Draft


def build_tree(acc: list[list[float]], num_nodes: int) -> TreeSpec:
    """The `num_nodes`-node tree maximising the expected accepted length under acc[depth][choice]
    (each step's accuracy taken as independent of the others): greedy best-first over the frontier."""
    if not acc or not acc[0]:
        raise ValueError("build_tree needs at least one step with one measured choice")
    K, top = len(acc), len(acc[0])
    heap = [(-acc[0][c], (c,)) for c in range(top)]
    heapq.heapify(heap)
    chosen = []
    while heap and len(chosen) < num_nodes:
        negp, path = heapq.heappop(heap)
        chosen.append(path)
        if len(path) < K:
            for c in range(top):
                heapq.heappush(heap, (negp * acc[len(path)][c], path + (c,)))
    return TreeSpec(chosen)


def expected_accept_length(acc: list[list[float]], tree: TreeSpec) -> float:
    """1 (the target's own token) + sum over nodes of P(the node's path is accepted)."""
    total = 1.0
    for path in tree.paths:
        p = 1.0
        for d, c in enumerate(path):
            p *= acc[d][c] if d < len(acc) and c < len(acc[d]) else 0.0
        total += p
    return total


def _plan(paths, device):
    """Per depth d >= 1: (parent node ids [P] (0 = root), first child node, end, child index into the
    parents' flattened top-k [C], kmax). A depth's nodes are contiguous in TreeSpec order."""
    index = {p: i + 1 for i, p in enumerate(paths)}
    index[()] = 0
    levels = []
    for d in range(1, max((len(p) for p in paths), default=0) + 1):
        kids = [p for p in paths if len(p) == d]
        parents = list(dict.fromkeys(p[:-1] for p in kids))
        slot = {q: i for i, q in enumerate(parents)}
        kmax = max(p[-1] for p in kids) + 1
        t = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
        levels.append((t([index[q] for q in parents]), index[kids[0]], index[kids[-1]] + 1,
                       t([slot[p[:-1]] * kmax + p[-1] for p in kids]), kmax))
    return levels


class Eagle3Drafter:
    """A Drafter (see `accel.decoding.tree.Drafter`) over a trained `Eagle3Draft` and the target's embedding."""

    def __init__(self, draft: Eagle3Draft, embed: torch.nn.Module):
        self.net = draft.eval()
        self.embed = embed
        self.feature_layers = tuple(draft.feature_layers)
        self.state = DraftState(draft)
        self.pending = None
        self._plans: dict = {}

    @property
    def num_heads(self) -> int:
        """Depth the draft was trained to (the tree may go deeper; accuracy falls off past it)."""
        return int(getattr(self.net, "ttt_steps", 8))

    @torch.no_grad()
    def observe(self, hidden, valid, position_ids, tokens, prefill: bool = False):
        """Accepted positions: the target's features there ([B,q,3H]), validity, positions and tokens."""
        if prefill:
            self.state.reset()
        dt = self.net.fc.weight.dtype
        self.pending = (self.net.fc(hidden.to(dt)), valid, position_ids, tokens)

    def _plan(self, tree, device):
        key = (id(tree), str(device))
        hit = self._plans.get(key)
        if hit is None or hit[0] is not tree:
            hit = self._plans[key] = (tree, _plan(list(tree.paths), device), tree.buffers(device).attn_mask[:, 1:])
        return hit[1], hit[2]

    @torch.no_grad()
    def draft(self, hidden_last, root_token, tree) -> torch.Tensor:
        """[B,H] (unused: the draft reads its own features), [B] -> [B, N+1] candidate ids, node 0 = root."""
        if self.pending is None:
            raise RuntimeError("EAGLE-3 drafts from the target's hidden states, but the tree decoder never called "
                               "drafter.observe(); use accel.decoding.tree.generate_tree")
        d = self.net
        g, valid, pos, tokens = self.pending
        self.pending = None
        B, q = valid.shape
        dev = g.device
        rows = torch.arange(B, device=dev)
        last = (valid * torch.arange(1, q + 1, device=dev)).argmax(1)  # each row's newest valid position
        nxt = torch.cat([tokens[:, 1:], tokens[:, -1:]], 1).clone()
        nxt[rows, last] = root_token.to(nxt.dtype)
        out = self.state.push(g, self._embed(nxt, g.dtype), valid, pos)
        h_root, p_root = out[rows, last], pos[rows, last]
        levels, anc = self._plan(tree, dev)
        N1 = tree.num_nodes + 1
        cand = torch.empty(B, N1, dtype=torch.long, device=dev)
        cand[:, 0] = root_token
        h_node = g.new_zeros(B, N1, g.shape[-1])
        h_node[:, 0] = h_root
        layer = d.layers[0]
        K, V, kv = self.state.k, self.state.v, self.state.key_valid
        tk = K.new_zeros(B, K.shape[1], N1 - 1, K.shape[3])
        tv = torch.zeros_like(tk)
        logits = d.logits(h_root)[:, None]  # [B, 1, Vd]: the root's children
        for depth, (parents, start, end, flat, kmax) in enumerate(levels, start=1):
            if depth > 1:  # run this level's parents (depth-1 nodes) through the layer
                P = parents.numel()
                hp = h_node[:, tree_parent(tree, dev)[parents]]
                ep = self._embed(cand[:, parents], g.dtype)
                ppos = (p_root + depth - 1)[:, None].expand(B, P)
                cos, sin = d.rope(hp, ppos)
                qq, kk, vv = layer.qkv(ep, hp, cos, sin)
                tk[:, :, parents - 1], tv[:, :, parents - 1] = kk, vv
                mask = torch.cat([kv[:, None, :].expand(B, P, -1), anc[parents][None].expand(B, P, -1)], -1)
                ho = layer.attend(hp, qq, torch.cat([K, tk], 2), torch.cat([V, tv], 2), mask)
                h_node[:, parents] = ho
                logits = d.logits(ho)
            top, _ = draft_topk(logits, kmax, d.d2t)             # [B, P, kmax] target ids
            cand[:, start:end] = top.flatten(1)[:, flat]
        return cand

    def _embed(self, ids, dtype):
        return self.embed(ids).to(dtype)


def tree_parent(tree: TreeSpec, device):
    return tree.buffers(device).parent
