"""LLaDA (GSAI-ML) as published: OLMo-style code shipped with the weights.

Its forward takes an additive (or boolean) ``attention_bias`` [B, 1, Lq, Lk], not a 4D
``attention_mask`` (it reads that one as 2D padding); it has no ``position_ids`` (positions
are 0..L-1 of the fed sequence; with left padding that only shifts every row's positions by a
constant, which RoPE cannot see); and it refuses a KV cache. Logits are unshifted.

Forwards with a KV cache (Fast-dLLM prefix/dual, dParallel's cached rows, D2F's block cache) are
computed by accel itself from the published model's modules (`accel.models.families.llada_forward`);
every uncached forward stays the published one. A config whose options that forward does not
compute (`llada_forward.unsupported`) has no cache: the self-check says so in one line.

transformers 5 compatibility, applied to a subclass made at load time (the user's files and
transformers stay untouched): the published ``__init__`` never calls ``post_init()`` (which
transformers 5 needs to set up tied-weight bookkeeping), and its ``tie_weights()`` does not
accept the keyword arguments transformers 5 passes. Both subclasses keep ``_auto_class``, so a
saved (distilled) model gets the shipped code files beside its weights, as the original had.
"""
from __future__ import annotations

from accel.models.families.base import Family, ForwardOut, published_subclass, remote_class

MASK_ID, EOS_ID, EOT_ID = 126336, 126081, 126348


class LLaDA(Family):
    name = "llada"
    kind = "dllm"
    mask_id = MASK_ID
    shift_logits = False
    supports_cache = True
    lora_names = {"o_proj": "attn_out", "gate_proj": "ff_proj", "down_proj": "ff_out"}

    def auto_class(self):
        from transformers import AutoModel
        return AutoModel

    def load_model(self, path, cfg: dict, **kw):
        base = remote_class(path, cfg, "AutoModel")
        return _compatible(base).from_pretrained(str(path), **kw)

    def after_load(self, model) -> None:
        # transformers 5 no longer defaults config.use_cache; the published forward reads it
        if getattr(model.config, "use_cache", None) is None:
            model.config.use_cache = False

    def forward(self, model, ids, mask4d=None, pos=None, past_key_values=None, use_cache: bool = False,
                output_hidden_states: bool = False) -> ForwardOut:
        if past_key_values is not None or use_cache:
            from accel.models.families import llada_forward  # torch: not imported with the registry
            why = llada_forward.unsupported(model)
            if why is not None:
                raise ValueError(f"LLaDA's published code has no KV cache and accel's cached forward does not "
                                 f"compute this model: {why}; decode it without a cache")
            if use_cache and past_key_values is None:
                from transformers import DynamicCache
                past_key_values = DynamicCache()
            logits, hidden = llada_forward.forward(model, ids, mask4d, pos, past_key_values, output_hidden_states)
            return ForwardOut(logits, past_key_values if use_cache else None, hidden)
        out = model(input_ids=ids, attention_bias=mask4d, use_cache=False, output_hidden_states=output_hidden_states)
        return ForwardOut(out.logits, None, getattr(out, "hidden_states", None))

    def cache_unsupported(self, model) -> str | None:
        from accel.models.families import llada_forward
        return llada_forward.unsupported(model)

    def end_ids(self, tokenizer, cfg: dict) -> tuple[int, ...]:
        """<|endoftext|> (126081) and the chat turn end <|eot_id|> (126348)."""
        return tuple(dict.fromkeys([EOS_ID, EOT_ID] + [i for i in [tokenizer.eos_token_id] if i is not None]))


@published_subclass
def _compatible(base):
    """A subclass of the published model class that loads under transformers 5 (made once per class)."""

    class Compatible(base):
        _auto_class = "AutoModel"  # save_pretrained copies the shipped code beside the weights

        def __init__(self, config, *args, **kwargs):
            super().__init__(config, *args, **kwargs)
            self.post_init()

        def tie_weights(self, *args, **kwargs):  # the published one takes no arguments
            return base.tie_weights(self)

    return Compatible
