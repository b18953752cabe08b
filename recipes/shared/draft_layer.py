"""The config of one extra decoder layer a draft runs beside a frozen AR model (Hydra++'s prefix
layer, EAGLE-3's draft layer): a Llama layer with the base's width, heads and RoPE, so one code
path serves Llama, Qwen2 and Mistral bases."""
from __future__ import annotations

from transformers import LlamaConfig


def one_layer_config(base_config):
    """A one-layer LlamaConfig (sdpa attention, no biases, untied) read from the base's config or dict."""
    d = base_config.to_dict() if hasattr(base_config, "to_dict") else dict(base_config)
    keep = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
            "rms_norm_eps", "hidden_act", "max_position_embeddings", "rope_parameters", "rope_theta",
            "rope_scaling", "vocab_size")
    cfg = LlamaConfig(**{k: d[k] for k in keep if d.get(k) is not None}, num_hidden_layers=1,
                      attention_bias=False, mlp_bias=False, tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    return cfg
