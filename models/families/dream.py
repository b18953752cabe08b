"""Dream (HKUNLP) as published: Qwen2-style code shipped with the weights.

Logits are shifted (``logits[i-1]`` predicts token ``i``); the 4D boolean mask goes straight
to SDPA through ``attention_mask``; position ids are honoured. It fills a cache object the
caller passes in but does not return it (its output is a ``MaskedLMOutput``), so the caller
owns the cache. Its vocabulary is padded to 152064 rows while the tokenizer ends at 151667:
those rows are no token (and its slow tokenizer crashes decoding them), so decoders mask them
(`Adapter.decodable`). Its tokenizer's eos is ``<|endoftext|>``; chat turns end with
``<|im_end|>``, which ends a generation too.

transformers 5 compatibility, applied at load time to the loaded module and a subclass (the
user's files and transformers stay untouched):

- the RoPE init looks up ``ROPE_INIT_FUNCTIONS["default"]``, which transformers 5 removed: the
  loaded module gets a table with a "default" entry (the plain RoPE frequencies);
- its ``from_pretrained`` override reloads the generation config as ``DreamGenerationConfig``,
  whose validation transformers 5 rejects; generation config is not used here, so the
  subclass loads through the standard ``from_pretrained``;
- the published ``_tied_weights_keys`` is a list; transformers 5 expects a {target: source}
  mapping when saving;
- transformers 5 builds the model on the meta device and only fills tensors found in the
  checkpoint, so the non-persistent RoPE ``inv_freq`` buffers come back as uninitialised
  memory (different logits on every load): ``reset_rope_parameters()`` recomputes them.
"""
from __future__ import annotations

import sys
import warnings

from accel.models.families.base import Family, ForwardOut, published_subclass, remote_class

MASK_ID = 151666


class Dream(Family):
    name = "dream"
    kind = "dllm"
    mask_id = MASK_ID
    shift_logits = True
    supports_cache = True
    extra_end_tokens = ("<|im_end|>",)

    def auto_class(self):
        from transformers import AutoModel
        return AutoModel

    def silence(self) -> None:
        # its config re-validates RoPE through an API transformers 5 deprecates whenever a library
        # (peft) rebuilds it: warnings on every training run that the user can do nothing about
        warnings.filterwarnings("ignore", message=".*rope_config_validation.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*`rope_scaling` is deprecated.*", category=FutureWarning)

    def load_model(self, path, cfg: dict, **kw):
        base = remote_class(path, cfg, "AutoModel")
        _add_default_rope(sys.modules[base.__module__])
        return _compatible(base).from_pretrained(str(path), **kw)

    def after_load(self, model) -> None:
        if hasattr(model, "reset_rope_parameters"):
            model.reset_rope_parameters()

    def forward(self, model, ids, mask4d=None, pos=None, past_key_values=None, use_cache: bool = False,
                output_hidden_states: bool = False) -> ForwardOut:
        if use_cache and past_key_values is None:
            from transformers import DynamicCache
            past_key_values = DynamicCache()
        out = model(input_ids=ids, attention_mask=mask4d, position_ids=pos,
                    past_key_values=past_key_values if use_cache else None, use_cache=use_cache,
                    output_hidden_states=output_hidden_states)
        return ForwardOut(out.logits, past_key_values if use_cache else None, getattr(out, "hidden_states", None))


def default_rope(config, device=None, seq_len=None, **_):
    """Plain RoPE inverse frequencies (transformers 4's "default" entry): 1 / theta^(2i/d)."""
    import torch
    theta = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dim = int(dim * getattr(config, "partial_rotary_factor", 1.0))
    inv = 1.0 / (float(theta) ** (torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim))
    return inv, 1.0


def _add_default_rope(module) -> None:
    table = getattr(module, "ROPE_INIT_FUNCTIONS", None)
    if table is not None and "default" not in table:
        module.ROPE_INIT_FUNCTIONS = {**table, "default": default_rope}


@published_subclass
def _compatible(base):
    """A subclass of the published model class whose from_pretrained is the standard one."""
    from transformers import PreTrainedModel

    class Compatible(base):
        _auto_class = "AutoModel"  # save_pretrained copies the shipped code beside the weights
        # transformers 5 reads tied weights as {target: source}; the published list form breaks saving
        if isinstance(getattr(base, "_tied_weights_keys", None), list):
            _tied_weights_keys = {k: "model.embed_tokens.weight" for k in base._tied_weights_keys}

        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            return PreTrainedModel.from_pretrained.__func__(cls, *args, **kwargs)

    return Compatible
