"""Configs of the built-in tiny teachers: ordinary `LlamaForCausalLM`s.

The dLLM is the same architecture run with a bidirectional (or block-causal) 4D attention
mask, which transformers honours natively (docs/backbones.md); its conventions
(mask id, logit alignment) are recorded in `config.json` under `accel_dllm` so the adapter
can read them back from any saved directory.
"""
from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

TINY_AR = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
               intermediate_size=384, max_position_embeddings=512, rope_theta=10000.0)
TINY_DLLM = dict(TINY_AR)
"""Same shape as the AR teacher: the dLLM build starts from its weights (as Dream starts from Qwen)."""


def make_config(kind: str, tokenizer, shift_logits: bool = False, **overrides):
    """A LlamaConfig for a tiny teacher of `kind` ("dllm" or "ar") over `tokenizer`."""
    base = dict(TINY_DLLM if kind == "dllm" else TINY_AR)
    base.update(overrides)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), tie_word_embeddings=True, attention_dropout=0.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **base,
    )
    if kind == "dllm":
        cfg.accel_dllm = {"mask_token_id": tokenizer.mask_token_id, "shift_logits": bool(shift_logits),
                          "attention": "bidirectional"}
    return cfg


def make_model(kind: str, tokenizer, seed: int = 0, shift_logits: bool = False, **overrides):
    torch.manual_seed(seed)
    cfg = make_config(kind, tokenizer, shift_logits=shift_logits, **overrides)
    cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(cfg)
