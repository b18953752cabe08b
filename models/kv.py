"""The KV-cache argument's name, per model: transformers 5.24.0 renamed `past_key_values` to `cache`
(forward keyword and output field; removal of the old name announced for 5.40) and warns on every
use of the old name (a FutureWarning per call, even with a None value, and once per process on its
logger); remote-code models (LLaDA, Dream) and 5.0-5.23 only know `past_key_values`. Passing the
name each model declares fixes the warning at its cause."""
from __future__ import annotations

import functools
import inspect


def unwrap(model):
    """The module whose forward receives the keyword (through DDP and PEFT wrappers)."""
    for _ in range(6):
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "module") and not hasattr(model, "forward_logits"):
            model = model.module
        else:
            break
    return model


@functools.lru_cache(maxsize=None)
def _name_for(cls) -> str:
    try:
        params = inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(model, cache) -> dict:
    """{name: cache} for `model(...)`, or {} when there is no cache to pass."""
    if cache is None:
        return {}
    return {_name_for(type(unwrap(model))): cache}


def output_cache(out):
    """The KV cache a forward returned (`cache` or `past_key_values`, whichever the output declares)."""
    fields = getattr(type(out), "__dataclass_fields__", {})
    if "cache" in fields:
        return out.cache
    return out.past_key_values
