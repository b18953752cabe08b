"""Hydra draft heads: sequentially dependent heads over a frozen AR base (Hydra, Hydra++).

Head k (k = 1..K) predicts token t+k+1 from the base's last hidden state h_t *and* the
embeddings of the tokens already drafted, x_{t+1..t+k}:

    y = h_t + SiLU(W_in · concat(h_t, E(x_{t+1}), ..., E(x_{t+k})))      (W_in zero-init)
    y = y + SiLU(W_j y)   for the remaining L-1 residual layers          (zero-init)
    logits = W_vocab y + b                                                (from the base lm_head, bias 0)

Zero-initialised residuals make every head start as the base's own next-token predictor,
as in Medusa. E is the base model's (frozen) input embedding: it is not part of the heads'
weights, so a checkpoint stays small and always matches its base.

Hydra++ adds a *prefix layer*: one full decoder layer (`LlamaDecoderLayer` built from the
base config) that attends causally over the base hidden states of the whole context and
replaces h_t as the heads' input. Its attention and MLP output projections are zero-init,
so it starts as the identity. At decode time it keeps **its own KV cache** (`PrefixState`):
after each verification step the hidden states of the newly accepted tokens are pushed
through it once, so its per-step cost is the keys/values of ≤ K+1 tokens and one query (the
heads read only the newest output), not the context.
Rows of a batch accept different numbers of tokens; every row appends the same number of
slots and a key-validity mask hides the unused ones (no per-row ragged cache).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

from accel.recipes.shared.draft_layer import one_layer_config
from accel.recipes.shared.heads import set_token_map


class ResBlock(nn.Module):
    """x + SiLU(W x + b), W zero-init (starts as the identity). Each layer is its own module."""

    def __init__(self, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return x + self.drop(F.silu(self.linear(x)))


class HydraHead(nn.Module):
    """Head `depth` (1-based): reads h_t and `depth` drafted-token embeddings, returns vocab logits."""

    def __init__(self, hidden: int, vocab: int, depth: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        self.depth = depth
        self.inp = nn.Linear(hidden * (depth + 1), hidden)
        nn.init.zeros_(self.inp.weight)
        nn.init.zeros_(self.inp.bias)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([ResBlock(hidden, dropout) for _ in range(num_layers - 1)])
        self.lm_head = nn.Linear(hidden, vocab, bias=True)

    def forward(self, h, embs):
        """h [..., H]; embs [..., depth, H] (E(x_{t+1}), ..., E(x_{t+depth})) -> logits [..., V]."""
        x = torch.cat([h, embs.flatten(-2)], dim=-1)
        y = h + self.drop(F.silu(self.inp(x)))
        for b in self.blocks:
            y = b(y)
        return self.lm_head(y)


class PrefixLayer(nn.Module):
    """Hydra++'s extra decoder layer over the base hidden states (identity at init)."""

    def __init__(self, base_config):
        super().__init__()
        cfg = one_layer_config(base_config)
        self.layer = LlamaDecoderLayer(cfg, layer_idx=0)
        self.rotary = LlamaRotaryEmbedding(cfg)
        for lin in (self.layer.self_attn.o_proj, self.layer.mlp.down_proj):
            nn.init.zeros_(lin.weight)

    def forward(self, hidden, key_valid, position_ids):
        """hidden [B,L,H], key_valid [B,L], position_ids [B,L] -> [B,L,H] (training / full-context view).

        Query j attends to valid keys i <= j. Decoding goes through `PrefixState` (same math).
        """
        L = hidden.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=hidden.device).tril()
        # a query with nothing to attend (left padding) sees itself, so no row is all -inf
        mask = (causal[None] & key_valid[:, None]) | torch.eye(L, dtype=torch.bool, device=hidden.device)
        pos_emb = self.rotary(hidden, position_ids)
        # boolean mask: the layer runs sdpa (one_layer_config)
        return self.layer(hidden, attention_mask=mask[:, None], position_ids=position_ids, position_embeddings=pos_emb)


class HydraHeads(nn.Module):
    """K sequential heads (+ the Hydra++ prefix layer). Holds only trainable weights."""

    def __init__(self, hidden: int, vocab: int, num_heads: int, num_layers: int, dropout: float = 0.0,
                 prefix_config=None, token_map: torch.Tensor | None = None):
        """vocab: the full vocabulary; with `token_map` (a draft vocabulary, `accel.data.draft_vocab`) the
        heads predict over len(token_map) ids and token_map[i] is draft index i's full id."""
        super().__init__()
        self.full_vocab = vocab
        vocab = set_token_map(self, token_map, vocab)
        self.hidden, self.vocab, self.num_layers = hidden, vocab, num_layers
        self.heads = nn.ModuleList([HydraHead(hidden, vocab, k + 1, num_layers, dropout) for k in range(num_heads)])
        self.prefix = PrefixLayer(prefix_config) if prefix_config is not None else None

    @property
    def num_heads(self) -> int:
        return len(self.heads)

    def init_from_lm_head(self, lm_head: nn.Module):
        """Copy the base vocab projection into every head (bias starts at the base's, or 0)."""
        rows = self.token_map.to(lm_head.weight.device) if self.token_map is not None else slice(None)
        with torch.no_grad():
            for h in self.heads:
                h.lm_head.weight.copy_(lm_head.weight[rows])
                if getattr(lm_head, "bias", None) is not None:
                    h.lm_head.bias.copy_(lm_head.bias[rows])
                else:
                    h.lm_head.bias.zero_()

    def context(self, hidden, valid, position_ids):
        """Training/full-context view: the heads' h_t for every position ([B,L,H])."""
        if self.prefix is None:
            return hidden
        return self.prefix(hidden, valid, position_ids)

    def teacher_forced_logits(self, ctx, emb):
        """Logits of every head at every position with the true next tokens as drafted input.

        ctx [B,L,H] (h_t per position), emb [B,L,H] (E(x) per position). Head k at position t reads
        E(x_{t+1..t+k}) and predicts x_{t+k+1}; returns a list of K tensors [B, L-k-1, V] for
        t = 0..L-k-2.
        """
        L = ctx.shape[1]
        out = []
        for k, head in enumerate(self.heads, start=1):
            n = L - k - 1
            if n <= 0:
                out.append(ctx.new_zeros(ctx.shape[0], 0, self.vocab))
                continue
            embs = torch.stack([emb[:, j:j + n] for j in range(1, k + 1)], dim=2)  # [B,n,k,H]
            out.append(head(ctx[:, :n], embs))
        return out

    def config_dict(self) -> dict:
        return {"num_heads": self.num_heads, "num_layers": self.num_layers, "hidden_size": self.hidden,
                "vocab_size": self.full_vocab, "prefix_layer": self.prefix is not None,
                "draft_vocab_size": self.vocab if self.token_map is not None else 0}


class PrefixState:
    """Hydra++ decode state: the prefix layer's own KV cache and key-validity mask.

    Decoding pushes a few tokens per step, so the cost is per-op overhead more than FLOPs: `push`
    runs the layer as plain functional calls on fused weights (q|k|v and gate|up one matmul each,
    RoPE from a position table) and writes K/V into buffers that grow by doubling, where the HF
    layer would add module dispatch, a rotary pass and a DynamicCache `cat` per call. The heads
    read only each row's newest output, so attention and MLP run for that one query (every token
    still gets its K/V). Same math as `PrefixLayer.forward` up to rounding (a test compares them).
    `reset()` starts a new sequence and keeps the buffers.
    """

    def __init__(self, prefix: PrefixLayer):
        attn, mlp = prefix.layer.self_attn, prefix.layer.mlp
        cfg = attn.config
        self.prefix = prefix
        self.nh, self.nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd, self.scale = attn.head_dim, attn.scaling
        self.w_qkv = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]).detach()
        self.w_o = attn.o_proj.weight.detach()
        self.w_gu = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach()
        self.w_down, self.act = mlp.down_proj.weight.detach(), mlp.act_fn
        self.norms = [(n.weight.detach(), n.variance_epsilon)
                      for n in (prefix.layer.input_layernorm, prefix.layer.post_attention_layernorm)]
        self.cap = 0
        self.reset()

    def reset(self):
        self.len = 0
        self.last = None
        """[B,H]: the prefix layer's output at each row's newest valid token."""

    def _reserve(self, x, n: int):
        """Buffers (K, V, key validity, RoPE table) for n keys of x's batch size, grown by doubling."""
        B = x.shape[0]
        if n < self.cap and self.k.shape[0] == B:  # ar[1:q+1] needs cap >= n + 1
            return
        cap = max(n + 1, 64, 2 * self.cap if n > self.cap else self.cap)  # a new batch size alone does not grow it
        k, v, kv = (x.new_zeros(B, self.nkv, cap, self.hd), x.new_zeros(B, self.nkv, cap, self.hd),
                    torch.zeros(B, cap, dtype=torch.bool, device=x.device))
        if self.len:
            k[:, :, :self.len], v[:, :, :self.len], kv[:, :self.len] = (
                self.k[:, :, :self.len], self.v[:, :, :self.len], self.key_valid[:, :self.len])
        self.k, self.v, self.key_valid, self.cap = k, v, kv, cap
        self.ar = torch.arange(cap, device=x.device)
        cos, sin = self.prefix.rotary(x, self.ar[None])
        h = self.hd // 2
        # rotate_half(x) * sin == roll(x, h) * [-sin_1, sin_2]
        self.cos, self.sin = cos[0], torch.cat([-sin[0, :, :h], sin[0, :, h:]], -1)

    def _norm(self, x, i: int):
        w, eps = self.norms[i]
        return F.rms_norm(x, x.shape[-1:], w, eps)

    @torch.no_grad()
    def push(self, hidden, valid, position_ids):
        """Append new tokens (hidden [B,q,H], valid [B,q]); updates `last` where a row got one.

        Position ids must be below the cache length after the push (a key never sits left of
        its position).
        """
        B, q, _ = hidden.shape
        T, nh, nkv = self.len, self.nh, self.nkv
        n = T + q
        self._reserve(hidden, n)
        qkv = F.linear(self._norm(hidden, 0), self.w_qkv).view(B, q, nh + 2 * nkv, self.hd)
        qk = qkv[:, :, :nh + nkv]
        qk = qk * self.cos[position_ids, None] + qk.roll(self.hd // 2, -1) * self.sin[position_ids, None]
        self.k[:, :, T:n] = qk[:, :, nh:].transpose(1, 2)
        self.v[:, :, T:n] = qkv[:, :, nh + nkv:].transpose(1, 2)
        self.key_valid[:, T:n] = valid
        self.len = n
        rows, newest = self.ar[:B], (valid * self.ar[1:q + 1]).argmax(1)  # each row's newest valid token
        col = (newest + T)[:, None]
        keys = self.ar[:n]
        # a query with nothing to attend (left padding) sees itself, so no row is all -inf
        mask = (self.key_valid[:, :n] & (keys <= col)) | (keys == col)
        k, v = self.k[:, :, :n], self.v[:, :, :n]
        if nh != nkv:  # grouped-query attention (sdpa's enable_gqa needs torch >= 2.5)
            k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
        a = F.scaled_dot_product_attention(qk[rows, newest, :nh, None], k, v, attn_mask=mask[:, None, None],
                                           scale=self.scale)
        h = hidden[rows, newest] + F.linear(a.reshape(B, -1), self.w_o)
        gate, up = F.linear(self._norm(h, 1), self.w_gu).chunk(2, -1)
        out = h + F.linear(self.act(gate) * up, self.w_down)
        self.last = out if self.last is None else torch.where(valid.any(1)[:, None], out, self.last)
        return self.last
