"""What every model family shares: the forward's return type, the HF-native base class and the
helpers a family uses to load published (remote-code) models.

Kept apart from the registry in `accel.models.families` so that a family module (`llada.py`,
`dream.py`) can subclass `Family` while the registry imports every family: the registry sits
above the families, the families above this module.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass

from accel.models.kv import cache_kwargs, output_cache


@dataclass
class ForwardOut:
    """What a family forward returns, whatever the model's own output type was."""
    logits: object
    past_key_values: object = None
    hidden_states: tuple | None = None


class Family:
    """HF-native behaviour: the 4D mask as ``attention_mask``, position ids, the returned cache."""
    name = "causal-lm"
    kind = "ar"
    mask_id: int | None = None
    shift_logits = False
    supports_cache = True
    """Whether the model's code accepts a KV cache (Fast-dLLM prefix/dual, cached D2F)."""
    lora_names: dict[str, str] = {}
    """Llama leaf module names (what the recipes' LoRA defaults say) -> this family's names for the same
    layer, where they differ (`lora_targets`)."""
    extra_end_tokens: tuple[str, ...] = ()
    """Chat end tokens that also end a generation, by text (looked up in the tokenizer)."""

    def auto_class(self):
        from transformers import AutoModelForCausalLM
        return AutoModelForCausalLM

    def load_model(self, path, cfg: dict, **kw):
        """The model from directory `path` (`cfg`: its config.json), compatible with this transformers."""
        return self.auto_class().from_pretrained(str(path), **kw)

    def after_load(self, model) -> None:
        """Repairs applied to the loaded object (buffers the loader left uninitialised, config defaults)."""

    def lora_targets(self, model, targets) -> tuple[list[str], list[str]]:
        """(target leaf names, excluded module names) for LoRA on `model`: Llama names the model lacks
        become this family's names (`lora_names`: LLaDA's o_proj is attn_out, down_proj is ff_out), so a
        recipe's default fits every family; a translated name never reaches the output head (LLaDA's head
        is also called ff_out). Names the model has, or that have no translation, stay as given."""
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        out = [t if t in names else self.lora_names.get(t, t) for t in targets]
        if out == list(targets):
            return out, []
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        exclude = [n for n, m in model.named_modules() if head is not None and m is head
                   and n.rsplit(".", 1)[-1] in out and n.rsplit(".", 1)[-1] not in targets]
        return list(dict.fromkeys(out)), exclude

    def cache_unsupported(self, model) -> str | None:
        """Why this loaded model's cached forward cannot run (one phrase), or None when it can."""
        return None

    def silence(self) -> None:
        """Process-wide filters for warnings the model's code raises on every use (after loading)."""

    def forward(self, model, ids, mask4d=None, pos=None, past_key_values=None, use_cache: bool = False,
                output_hidden_states: bool = False) -> ForwardOut:
        kw = cache_kwargs(model, past_key_values)  # `cache` or `past_key_values`, as the model declares
        if output_hidden_states:
            kw["output_hidden_states"] = True
        out = model(input_ids=ids, attention_mask=mask4d, position_ids=pos, use_cache=use_cache, **kw)
        return ForwardOut(out.logits, output_cache(out) if use_cache else None, getattr(out, "hidden_states", None))

    def end_ids(self, tokenizer, cfg: dict) -> tuple[int, ...]:
        """Ids that end a generation: the tokenizer's eos plus the family's chat end tokens."""
        ids = [tokenizer.eos_token_id]
        for text in self.extra_end_tokens:
            tid = tokenizer.convert_tokens_to_ids(text)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id:
                ids.append(tid)
        return tuple(dict.fromkeys(i for i in ids if i is not None))


class Builtin(Family):
    """accel's own tiny models: mask id and alignment recorded in ``config.accel_dllm``."""
    name = "builtin"
    kind = "dllm"


@contextlib.contextmanager
def quiet_load():
    """Model code written for older transformers warns on every load (deprecated rope keys, ...);
    the user can do nothing about it, so it is kept off their terminal."""
    from transformers.utils import logging as hf_logging
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def remote_class(path, cfg: dict, auto_name: str = "AutoModel"):
    """The model class named by the checkpoint's ``auto_map`` (its shipped code), imported."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    ref = cfg.get("auto_map", {}).get(auto_name)
    if ref is None:
        raise ValueError(f"config.json has no auto_map.{auto_name} entry naming the model class")
    return get_class_from_dynamic_module(ref, str(path))


def published_subclass(make):
    """Decorator for a family's ``make(base) -> subclass`` of a published (remote-code) model class that
    makes it load under transformers 5: made once per class, named and placed like `base`, so
    saved checkpoints and messages still name the published class."""
    made: dict = {}

    @functools.wraps(make)
    def get(base):
        if base not in made:
            cls = make(base)
            cls.__name__ = cls.__qualname__ = base.__name__
            cls.__module__ = base.__module__
            made[base] = cls
        return made[base]
    return get
