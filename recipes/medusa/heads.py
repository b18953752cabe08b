"""Medusa draft heads and the Drafter that turns them into tree candidates.

Head k (k = 0..K-1) maps the base's last hidden state h_t to logits for token t+k+2 (the base
itself predicts t+1): ``L`` residual blocks ``x + SiLU(W x + b)`` then a vocab projection.
W and b start at zero so every block starts as the identity, and the projection starts as a
copy of the base lm_head, so an untrained head already predicts "the next token" — a sane
starting point. Every block is its own module (the reference repo repeats one module L times,
silently sharing weights).

State-dict keys: ``blocks.{k}.{j}.linear.{weight,bias}``, ``lm_heads.{k}.weight``.

Draft vocabulary (``token_map``, EAGLE-3's d2t, vLLM Medusa's ``truncated_vocab_size`` +
``token_map``): the projections then cover only the N most frequent training tokens and
``token_map[i]`` is the full-vocabulary id of draft index i. On a 49K-vocabulary model the
projections are most of the heads' FLOPs; drafts are mapped back to full ids before
verification, so decoding stays exactly greedy — a token outside the draft vocabulary simply
can never be drafted. State-dict key: ``token_map`` (int64 [N]).
"""
from __future__ import annotations

import torch
from torch import nn

from accel.decoding.gate import top1
from accel.decoding.tree import TreeSpec, _split_model, topk_candidates
from accel.recipes.shared.heads import set_token_map


AUTO_TREE_ESTIMATE = 48
"""tree_nodes=0 (sized on the decoding device): the tree the run's own estimates are computed for."""


def split_model(model):
    """(body, lm_head) of the base the heads sit on: the heads read the body's last hidden state and
    start from the lm_head's weights (both the live and the cached-states training use it)."""
    return _split_model(model)


class ResBlock(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.linear = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.act = nn.SiLU()

    def forward(self, x):
        return x + self.act(self.linear(x))


class MedusaHeads(nn.Module):
    def __init__(self, hidden_size: int, vocab_size: int, num_heads: int = 4, num_layers: int = 1,
                 lm_head_weight: torch.Tensor | None = None, token_map: torch.Tensor | None = None):
        """vocab_size: the full vocabulary; with `token_map` the heads predict over len(token_map) ids."""
        super().__init__()
        self.full_vocab_size = vocab_size
        vocab_size = set_token_map(self, token_map, vocab_size)
        self.hidden_size, self.vocab_size = hidden_size, vocab_size
        self.num_heads, self.num_layers = num_heads, num_layers
        self.blocks = nn.ModuleList([nn.ModuleList([ResBlock(hidden_size) for _ in range(num_layers)])
                                     for _ in range(num_heads)])
        self.lm_heads = nn.ModuleList([nn.Linear(hidden_size, vocab_size, bias=False) for _ in range(num_heads)])
        if lm_head_weight is not None:
            w = lm_head_weight.detach()
            if self.token_map is not None:
                w = w[self.token_map.to(w.device)]
            for h in self.lm_heads:
                h.weight.data.copy_(w.to(h.weight.dtype))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., H] -> [..., K, V]."""
        outs = []
        for blocks, proj in zip(self.blocks, self.lm_heads):
            x = hidden
            for blk in blocks:
                x = blk(x)
            outs.append(proj(x))
        return torch.stack(outs, dim=-2)

    def config(self) -> dict:
        """vocab_size is the full vocabulary; draft_vocab_size (0 = full) the heads' own output width."""
        return {"hidden_size": self.hidden_size, "vocab_size": self.full_vocab_size,
                "num_heads": self.num_heads, "num_layers": self.num_layers,
                "draft_vocab_size": self.vocab_size if self.token_map is not None else 0}

    def to_full_ids(self, draft_ids: torch.Tensor) -> torch.Tensor:
        return draft_ids if self.token_map is None else self.token_map[draft_ids]

    @classmethod
    def from_state_dict(cls, cfg: dict, state: dict) -> "MedusaHeads":
        heads = cls(int(cfg["hidden_size"]), int(cfg["vocab_size"]), int(cfg["num_heads"]), int(cfg["num_layers"]),
                    token_map=state.get("token_map"))
        heads.load_state_dict(state)
        return heads


class MedusaDrafter:
    """Drafter for `accel.decoding.tree.generate_tree`: node (depth d, choice c) = head d-1's c-th best.

    Drafting is latency-bound at batch 1, so the heads run batched over heads: each residual
    layer is one baddbmm for all K heads and the vocab projections one bmm (same weights and math
    as `MedusaHeads.forward`, a dozen ops instead of a module call per block). The weights are laid
    out that way once per device/dtype: a drafter decodes with frozen heads, so keep one across calls.
    """

    def __init__(self, heads: MedusaHeads):
        self.heads = heads
        self.num_heads = heads.num_heads
        self._bufs = {}
        self._fused = None

    def _layout(self):
        """([K,H,H] W^T, [K,1,H] b) per layer, [K,H,V] vocab projections^T."""
        h = self.heads
        layers = [(torch.stack([b[j].linear.weight.t() for b in h.blocks]).detach(),
                   torch.stack([b[j].linear.bias for b in h.blocks])[:, None].detach()) for j in range(h.num_layers)]
        return layers, torch.stack([p.weight.t() for p in h.lm_heads]).detach()

    def _weights(self):
        p = self.heads.lm_heads[0].weight
        if self._fused is None or self._fused[0] != (p.device, p.dtype):
            self._fused = ((p.device, p.dtype), *self._layout())
        return self._fused[1:]

    @torch.no_grad()
    def chain_levels(self, hidden_last: torch.Tensor, root_token: torch.Tensor, max_depth: int):
        """The top-1 chain one level at a time: yields (token [B], its probability under head d [B]), running
        head d only when level d is asked for (`accel.decoding.gate.GatedChain`)."""
        layers, lm = self._weights()
        for d in range(min(max_depth, self.num_heads)):
            y = hidden_last.to(lm.dtype)
            for w, b in layers:
                y = y + torch.nn.functional.silu(torch.addmm(b[d], y, w[d]))
            top, p = top1(y @ lm[d])
            tmap = self.heads.token_map
            yield (tmap[top] if tmap is not None else top), p

    @torch.no_grad()
    def draft(self, hidden_last: torch.Tensor, root_token: torch.Tensor, tree: TreeSpec) -> torch.Tensor:
        key = (id(tree), str(hidden_last.device))
        if key not in self._bufs:
            if tree.max_depth > self.num_heads:
                raise ValueError(f"the tree is {tree.max_depth} deep but there are only {self.num_heads} heads")
            self._bufs[key] = tree.buffers(hidden_last.device)
        layers, lm = self._weights()
        D = tree.max_depth  # only the heads the tree reaches: a chain of 2 runs 2 of K heads
        y = hidden_last.to(lm.dtype)[None].expand(D, -1, -1)  # [D, B, H]
        for w, b in layers:
            y = y + torch.nn.functional.silu(torch.baddbmm(b[:D], y, w[:D]))
        logits = torch.bmm(y, lm[:D]).transpose(0, 1)  # [B, D, V]
        cand = topk_candidates(logits, root_token, tree, self._bufs[key])
        if self.heads.token_map is not None:  # draft indices -> full-vocabulary ids (the root already is one)
            cand = torch.cat([cand[:, :1], self.heads.token_map[cand[:, 1:]]], 1)
        return cand
