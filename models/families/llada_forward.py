"""LLaDA's forward computed by accel, with a KV cache, from the loaded published model's own modules.

The published LLaDA code asserts ``The kvcache is not suppotred for MDM.``, so the cached
decoders (Fast-dLLM prefix/dual, dParallel's cached rows, D2F's exact block cache) could not
run on it. This module computes the same blocks itself, reading the parameters where the
published module keeps them (``model.transformer``: ``wte``, ``blocks[i]``, ``ln_f``,
``ff_out``) and calling the linear layers as modules, so LoRA adapters that peft put in their
place take part. Nothing is converted, copied or patched: the published class still does every
uncached forward (`accel.models.families.llada.LLaDA.forward`), this one only those with a cache.

What it computes, per the config fields the published code reads:

- embeddings ``wte`` (times sqrt(d_model) with ``input_emb_norm``);
- per block (the ``llama`` block type): RMSNorm (``layer_norm_type`` rms or gemma_rms, eps
  ``rms_norm_eps``, normalised in float32 then cast back, as published) -> q/k/v projections ->
  RoPE (``rope_theta``; in float32 with ``rope_full_precision``) -> scaled-dot-product attention
  with an additive bias (``finfo(dtype).min`` where the 4D boolean mask says no, as the published
  code turns a boolean ``attention_bias`` into one), grouped KV heads repeated to the query heads
  -> ``attn_out``; RMSNorm -> ``silu(ff_proj(x)) * up_proj(x)`` -> ``ff_out``; both residual;
- ``ln_f`` and the output head (``wte`` when ``weight_tying``; ``scale_logits`` divides by
  sqrt(d_model)).

Positions: the published code has no ``position_ids`` (positions 0..L-1 of what is fed); a cached
forward must place the fed tokens after the cached ones, so here RoPE uses the caller's position
ids (`accel.models.masks.position_ids`: counted from a row's first real token). RoPE depends only on
position differences, so on a left-padded row this gives the published logits up to rounding.

Keys are cached after RoPE in a transformers ``DynamicCache`` (the decoders crop, narrow and
reorder it, `accel.decoding.cache`); dropout is not applied (the cached path serves decoding).
Options an LLaDA release does not ship (other block types, layer norms or activations, ALiBi,
QK layer norm, block groups) are refused by `unsupported`, and the family then decodes without a
cache through the published forward.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from accel.models.kv import unwrap

NORMS = ("rms", "gemma_rms")
"""``layer_norm_type`` values computed here (LLaDA-8B-Base, -Instruct and LLaDA-1.5 ship "rms")."""


def _value(v):
    """A config field as plain data (the published config keeps some as StrEnum members)."""
    return getattr(v, "value", v)


def core_config(model):
    """The config the published forward reads (its inner ``ModelConfig``), through peft/DDP wrappers."""
    lm = unwrap(model)
    inner = getattr(lm, "model", None)
    return getattr(inner, "config", None) or lm.config


def unsupported(model) -> str | None:
    """None when this module computes what the published code does for `model`'s config; else why
    not, as one phrase naming the config field (what the caller's one line says)."""
    if not hasattr(getattr(unwrap(model), "model", None), "transformer"):
        return "the model has no model.transformer (not the published LLaDA layout)"
    cfg = core_config(model)

    def get(name, default=None):
        return _value(getattr(cfg, name, default))

    checks = (
        ("block_type", get("block_type") == "llama", "llama"),
        ("layer_norm_type", get("layer_norm_type") in NORMS, " or ".join(NORMS)),
        ("activation_type", get("activation_type") == "silu", "silu"),
        ("rope", bool(get("rope")), "true"),
        ("alibi", not get("alibi"), "false"),
        ("attention_layer_norm", not get("attention_layer_norm"), "false"),
        ("block_group_size", int(get("block_group_size", 1) or 1) == 1, "1"),
    )
    for name, ok, want in checks:
        if not ok:
            return f"config {name}={get(name)!r} (the cached LLaDA forward supports {want})"
    return None


def _kv_heads(cfg) -> int:
    eff = getattr(cfg, "effective_n_kv_heads", None)
    if isinstance(eff, int):
        return eff
    return int(getattr(cfg, "n_kv_heads", None) or cfg.n_heads)


def _norm(module, x: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """LLaDA's RMSNorm: normalised in float32, cast back, then the affine weight (and bias)."""
    dtype = x.dtype
    xf = x.float()
    x = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)
    w, b = getattr(module, "weight", None), getattr(module, "bias", None)
    if w is None:
        return x
    x = x * (1 + w) if kind == "gemma_rms" else w * x
    return x if b is None else x + b


def _rope(pos: torch.Tensor, dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos) [B, 1, T, dim] in float32 at positions `pos` [B, T], halves laid out as LLaDA's."""
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float) / dim))
    freqs = pos.to(device=device, dtype=torch.float)[..., None] * inv
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.sin(), emb.cos()


def _rotate(t: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    half = t.shape[-1] // 2
    rot = torch.cat((-t[..., half:], t[..., :half]), dim=-1)
    return (t * cos + rot * sin).to(t.dtype)


def _bias(mask4d, dtype) -> torch.Tensor | None:
    """The additive attention bias of a 4D boolean mask (True = attend), in the attention dtype."""
    if mask4d is None:
        return None
    if mask4d.dtype != torch.bool:
        return mask4d.to(dtype)
    return torch.zeros(mask4d.shape, dtype=dtype, device=mask4d.device).masked_fill_(~mask4d, torch.finfo(dtype).min)


def forward(model, ids: torch.Tensor, mask4d=None, pos=None, cache=None,
            output_hidden_states: bool = False) -> tuple[torch.Tensor, tuple | None]:
    """(logits [B, T, V], hidden states or None) of `ids` [B, T] fed after what `cache` holds.

    mask4d: [B, 1, T, cached + T] bool (True = attend) or None (attend to everything); pos:
    [B, T] position ids (None: cached length + 0..T-1); cache: a transformers ``DynamicCache``
    that receives this forward's keys and values (None: no cache).
    """
    cfg = core_config(model)
    t = unwrap(model).model.transformer
    B, T = ids.shape
    d, nh = cfg.d_model, cfg.n_heads
    hd, nkv = d // nh, _kv_heads(cfg)
    kind, eps = _value(cfg.layer_norm_type), float(cfg.rms_norm_eps)
    if pos is None:
        past = cache.get_seq_length() if cache is not None else 0
        pos = torch.arange(past, past + T, device=ids.device)[None].expand(B, T)
    x = t.wte(ids)
    if cfg.input_emb_norm:
        x = x * (d ** 0.5)
    sin, cos = _rope(pos, hd, float(cfg.rope_theta), x.device)
    full = bool(cfg.rope_full_precision)
    if not full:
        sin, cos = sin.to(x.dtype), cos.to(x.dtype)
    bias = _bias(mask4d, x.dtype)
    hidden = []
    for i, blk in enumerate(t.blocks):
        if output_hidden_states:
            hidden.append(x)
        h = _norm(blk.attn_norm, x, kind, eps)
        q = blk.q_proj(h).view(B, T, nh, hd).transpose(1, 2)
        k = blk.k_proj(h).view(B, T, nkv, hd).transpose(1, 2)
        v = blk.v_proj(h).view(B, T, nkv, hd).transpose(1, 2)
        if full:
            q, k = _rotate(q.float(), sin, cos).type_as(q), _rotate(k.float(), sin, cos).type_as(k)
        else:
            q, k = _rotate(q, sin, cos), _rotate(k, sin, cos)
        if cache is not None:
            k, v = cache.update(k, v, i)
        if nkv != nh:
            k = k.repeat_interleave(nh // nkv, dim=1, output_size=nh)
            v = v.repeat_interleave(nh // nkv, dim=1, output_size=nh)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=False)
        x = x + blk.attn_out(att.transpose(1, 2).reshape(B, T, d))
        h = _norm(blk.ff_norm, x, kind, eps)
        x = x + blk.ff_out(F.silu(blk.ff_proj(h)) * blk.up_proj(h))
    x = _norm(t.ln_f, x, kind, eps)
    if output_hidden_states:
        hidden.append(x)
    logits = F.linear(x, t.wte.weight) if cfg.weight_tying else t.ff_out(x)
    if cfg.scale_logits:
        logits = logits * (1 / math.sqrt(d))
    return logits, (tuple(hidden) if output_hidden_states else None)
