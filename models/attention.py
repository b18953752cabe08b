"""Grouped-query attention that reads the KV cache in place: ``sdpa_gqa``, for decoding on a CPU.

Why. transformers' ``sdpa`` attention hands torch's SDPA the key/value heads as they are
(``enable_gqa``) only when no attention mask is passed. A forward of several new tokens over a KV
cache always has a mask (the causal one transformers builds, or a verification's tree mask), so
every layer first copies its whole cache ``num_attention_heads / num_key_value_heads`` times
(``repeat_kv``). On SmolLM2-135M (9 query heads, 3 key/value heads, 2 threads, a 300-token cache)
that copy is most of why a two-token forward cost 1.16 one-token forwards and a three-token one
1.24; handing the mask and the grouped heads to SDPA together (torch's CPU kernels take both) makes
them 1.05 and 1.10 (medians of 25 interleaved forwards; `scripts/step_profile.py --attention 3 --prompt-len 300`
compares the two). Speculative decoding lives on that
ratio: a verification of one or two drafts is such a forward.

How. `use_gqa_attention(model)` registers this function with transformers' own extension points
(``AttentionInterface`` and, for the masks it builds, ``AttentionMaskInterface`` with the sdpa
mask) and switches a loaded model to it with ``set_attn_implementation``: no patching, and the
switch is per model. Only for native transformers models with grouped heads, on a CPU: on CUDA,
SDPA with a mask and grouped heads falls back to its slowest kernel, which is why transformers
copies there.
"""
from __future__ import annotations

import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "sdpa_gqa"
"""The attention implementation's registered name (``model.config._attn_implementation``)."""


def sdpa_gqa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     is_causal=None, **kwargs):
    """transformers' attention-function contract: query [B, Hq, q, d], key/value [B, Hkv, k, d] ->
    ([B, q, Hq, d], None). The same SDPA call as ``sdpa`` with ``enable_gqa`` whatever the mask."""
    if kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None:
        raise ValueError(f"{NAME} attention supports neither softcap nor a position bias; load the model with sdpa")
    q_len = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_len > 1 and attention_mask is None and causal)
    if causal and key.shape[2] > q_len:  # an empty static cache's prefill (as sdpa does)
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                         scale=scaling, is_causal=causal,
                                         enable_gqa=key.shape[1] != query.shape[1])
    return out.transpose(1, 2).contiguous(), None


def groups_in_place(device) -> bool:
    """Whether SDPA should get grouped key/value heads with a mask as they are (a CPU) rather than repeated
    (CUDA, where that pair falls back to SDPA's math kernel): the one rule for accel's attention paths."""
    return device.type == "cpu"


def _register() -> None:
    AttentionInterface.register(NAME, sdpa_gqa_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_gqa_attention(model) -> bool:
    """Switches `model` (loaded, on its device) to ``sdpa_gqa`` when it runs transformers' ``sdpa`` on a
    CPU with fewer key/value heads than query heads; True if it did. Other models are left as they are."""
    cfg = getattr(model, "config", None)
    p = next(model.parameters(), None)
    if cfg is None or p is None or not groups_in_place(p.device) or getattr(cfg, "_attn_implementation", None) != "sdpa":
        return False
    if not type(model).__module__.startswith("transformers.models."):  # code shipped with a checkpoint
        return False
    heads, kv = getattr(cfg, "num_attention_heads", None), getattr(cfg, "num_key_value_heads", None)
    if not heads or not kv or kv == heads:
        return False
    _register()
    model.set_attn_implementation(NAME)
    return model.config._attn_implementation == NAME
