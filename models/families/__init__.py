"""Model families: how to load a backbone and how to call it, one small class per family.

Decoders and recipes speak one interface: ``forward(model, ids, mask4d, pos, ...)`` with a 4D
boolean attention mask (True = attend), explicit position ids and an optional HF cache object,
returning logits *as the model produces them* plus the cache and hidden states. Each family
translates that into what its published code accepts (LLaDA: an ``attention_bias``, no
position ids, and no cache, so accel computes its cached forwards itself; Dream: a cache object it fills but does not return) and declares what
it cannot do (``supports_cache``), so a decoder asks the family instead of testing names.

A new family is a subclass of `base.Family` in its own module here, registered in ``FAMILIES``; the
base class is the HF-native behaviour (Llama/Qwen causal LMs, the built-in tiny models).
"""
from __future__ import annotations

import functools

from accel.models.families.base import Builtin, Family
from accel.models.families.dream import Dream
from accel.models.families.llada import LLaDA

FAMILIES: dict[str, type[Family]] = {"llada": LLaDA, "dream": Dream, "builtin": Builtin, "causal-lm": Family}
"""Family name (as recorded on an Adapter) -> its class."""


@functools.lru_cache(maxsize=None)
def get_family(name: str) -> Family:
    """The (stateless, shared) family object for a name recorded on an Adapter."""
    return FAMILIES[name]()


def detect(cfg: dict) -> Family:
    """The family of a config.json dict."""
    mt = str(cfg.get("model_type", "")).lower()
    if "accel_dllm" in cfg:
        return Builtin()
    if "llada" in mt:
        return get_family("llada")
    if "dream" in mt:
        return get_family("dream")
    return Family()
