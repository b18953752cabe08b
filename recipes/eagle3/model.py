"""The EAGLE-3 draft network: fc over three target hidden states, one decoder layer, draft-vocab head.

At position t the draft reads g_t = fc([h_low; h_mid; h_high]_t) (the target's hidden states at
three depths, 3H -> H) and the embedding of token t+1, and predicts token t+2:

    x   = [input_layernorm(E(x_{t+1})); hidden_norm(g_t)]        (2H: q/k/v read both halves)
    y   = g_t + o_proj(attn(q, k, v))                            (the residual is g_t alone)
    out = y + mlp(post_attention_layernorm(y))                    (the next step's "g")
    logits = lm_head(norm(out))                                   (draft vocabulary, Vd rows)

Unrolled steps feed `out` back in place of g, one position further on, which is how decoding
drafts a second, third, ... token. The layer holds transformers' own Llama attention / MLP /
RMSNorm modules, so parameter names and shapes are those speculators, vLLM and SGLang load
(``layers.0.self_attn.q_proj.weight`` ...); the attention itself is computed here from their
weights, because the training-time test and the tree need masks and caches of their own.

Draft vocabulary (EAGLE-3): the Vd most frequent target tokens; ``d2t[i]`` is the offset from
draft id i to its target id (target = i + d2t[i]) and ``t2d`` marks target ids in the draft vocab.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaMLP, LlamaRMSNorm, LlamaRotaryEmbedding

from accel.recipes.shared.draft_layer import one_layer_config


def default_feature_layers(num_layers: int) -> list[int]:
    """EAGLE-3's low/mid/high taps (2, L/2, L-3) as HF ``hidden_states`` indices (the input of that
    layer); when those collide on a shallow target, three spread over 1..L-1 (repeats only when L < 4)."""
    L = num_layers
    ids = [2, L // 2, L - 3]
    if len(set(ids)) == 3 and 1 <= min(ids) and max(ids) <= L - 1 and ids == sorted(ids):
        return ids
    lo = 1 if L >= 4 else 0
    hi = max(L - 1, 0)
    return [round(lo + (hi - lo) * i / 2) for i in range(3)]


def layer_config(base_config):
    """A one-layer LlamaConfig with the target's width, heads and RoPE (Llama, Qwen2, Mistral configs)."""
    return one_layer_config(base_config)


def _rotate(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin


class DraftLayer(nn.Module):
    """EAGLE-3's decoder layer: Llama attention whose q/k/v read [norm(E(x)); norm(g)] (2H)."""

    def __init__(self, cfg):
        super().__init__()
        H = cfg.hidden_size
        self.self_attn = LlamaAttention(cfg, layer_idx=0)
        a = self.self_attn
        self.nh, self.nkv, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, a.head_dim
        a.q_proj = nn.Linear(2 * H, self.nh * self.hd, bias=False)
        a.k_proj = nn.Linear(2 * H, self.nkv * self.hd, bias=False)
        a.v_proj = nn.Linear(2 * H, self.nkv * self.hd, bias=False)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = LlamaRMSNorm(H, eps=cfg.rms_norm_eps)
        self.hidden_norm = LlamaRMSNorm(H, eps=cfg.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(H, eps=cfg.rms_norm_eps)

    def qkv(self, emb, g, cos, sin):
        """emb, g [B,T,H]; cos/sin [B,T,hd] -> q [B,nh,T,hd], k, v [B,nkv,T,hd] (RoPE applied)."""
        a = self.self_attn
        x = torch.cat([self.input_layernorm(emb), self.hidden_norm(g)], -1)
        B, T = x.shape[:2]
        q = a.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = a.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = a.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v

    def attend(self, g, q, k, v, mask):
        """The rest of the layer for queries q over keys k/v under bool mask [B,Tq,Tk] -> out [B,Tq,H]."""
        a = self.self_attn
        if self.nh != self.nkv:
            k, v = k.repeat_interleave(self.nh // self.nkv, 1), v.repeat_interleave(self.nh // self.nkv, 1)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], scale=a.scaling)
        y = g + a.o_proj(o.transpose(1, 2).reshape(g.shape[0], g.shape[1], -1))
        return y + self.mlp(self.post_attention_layernorm(y))


class Eagle3Draft(nn.Module):
    """fc + one `DraftLayer` + norm + draft-vocab lm_head; d2t/t2d as buffers. The target's token
    embedding is not part of it (frozen, passed in), so a run's checkpoints hold the draft alone."""

    def __init__(self, base_config, feature_layers: list[int], draft_ids: torch.Tensor):
        super().__init__()
        cfg = layer_config(base_config)
        self.config = cfg
        H, V = cfg.hidden_size, cfg.vocab_size
        self.hidden, self.vocab = H, V
        self.feature_layers = [int(i) for i in feature_layers]
        self.fc = nn.Linear(len(self.feature_layers) * H, H, bias=False)
        self.layers = nn.ModuleList([DraftLayer(cfg)])
        self.norm = LlamaRMSNorm(H, eps=cfg.rms_norm_eps)
        draft_ids = torch.as_tensor(draft_ids, dtype=torch.long)
        self.lm_head = nn.Linear(H, len(draft_ids), bias=False)
        self.rotary = LlamaRotaryEmbedding(cfg)
        t2d = torch.zeros(V, dtype=torch.bool)
        t2d[draft_ids] = True
        self.register_buffer("d2t", draft_ids - torch.arange(len(draft_ids)))
        self.register_buffer("t2d", t2d)

    @property
    def draft_vocab_size(self) -> int:
        return self.lm_head.out_features

    @property
    def draft_ids(self) -> torch.Tensor:
        """[Vd] target id of every draft id."""
        return self.d2t + torch.arange(len(self.d2t), device=self.d2t.device)

    def init_from_target(self, lm_head: nn.Module):
        """The target's output rows of the draft vocabulary as the head's start (what speculators loads)."""
        with torch.no_grad():
            self.lm_head.weight.copy_(lm_head.weight[self.draft_ids.to(lm_head.weight.device)])

    def logits(self, out):
        return self.lm_head(self.norm(out))

    def rope(self, x, position_ids):
        cos, sin = self.rotary(x, position_ids)
        return cos.to(x.dtype), sin.to(x.dtype)

    def unroll(self, feats, emb_next, valid, position_ids, steps: int):
        """Training-time test: logits of `steps` unrolled steps at every position ([B,T,Vd] each).

        feats [B,T,3H] (target hidden states), emb_next [B,T,H] (E(x_{t+1}) at t), valid [B,T],
        position_ids [B,T]. Step k at position t reads E(x_{t+1+k}) (teacher-forced tokens) and the
        draft's own step-(k-1) output at t (step 0: fc(feats)), sits at position t+k, and attends the
        step-0 keys of positions <= t plus its own keys of steps 1..k at t (the diagonal) — exactly
        what a depth-k tree node sees at decode time. Predicts x_{t+2+k}.
        """
        layer = self.layers[0]
        B, T, _ = emb_next.shape
        g = self.fc(feats)
        ar = torch.arange(T, device=g.device)
        causal = (ar[None, :] <= ar[:, None])[None] & valid[:, None, :]
        eye = torch.eye(T, dtype=torch.bool, device=g.device)[None].expand(B, T, T)
        mask = causal | eye  # a left-padding query sees itself: no all -inf row
        ks, vs, out = [], [], []
        for k in range(steps):
            emb = emb_next if k == 0 else torch.cat([emb_next[:, k:], emb_next[:, -1:].expand(B, k, -1)], 1)
            cos, sin = self.rope(g, position_ids + k)
            q, kk, vv = layer.qkv(emb, g, cos, sin)
            ks.append(kk)
            vs.append(vv)
            m = mask if k == 0 else torch.cat([mask] + [eye] * k, -1)
            g = layer.attend(g, q, torch.cat(ks, 2), torch.cat(vs, 2), m)
            out.append(self.logits(g))
        return out

    def config_dict(self) -> dict:
        return {"hidden_size": self.hidden, "vocab_size": self.vocab, "draft_vocab_size": self.draft_vocab_size,
                "feature_layers": self.feature_layers}


def build_draft_vocab(pairs, vocab_size: int, n: int, eos_ids=()) -> torch.Tensor:
    """Target ids of the draft vocabulary: the n most frequent response (+ end) tokens of `pairs`,
    ties by id; filled with the remaining ids in order when the data has fewer distinct tokens.
    Sorted ascending (d2t offsets are then non-negative, as EAGLE-3's are)."""
    n = min(int(n), int(vocab_size))
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for _, r in pairs:
        if r:
            counts += torch.bincount(torch.tensor(r, dtype=torch.long).clamp(0, vocab_size - 1), minlength=vocab_size)
    for e in eos_ids:
        counts[int(e)] += len(pairs)
    return torch.sort(-counts, stable=True).indices[:n].sort().values  # stable: ties by id
