"""What a bench or decode runs on: a TARGET (`Target`), the methods chosen for it and its defaults.

A target is used in two steps, so that a typo costs nothing: *described* (`describe_model` for a
plain model; `accel.recipes.targets.describe_target` adds what a checkpoint's recipe says), it knows
its kind, its method names and a checkpoint's decode defaults from config.json alone; `load` then
loads the backbone (and a checkpoint's methods) — the one loading function for every kind of target.
`select_methods` works on either: before loading, a checkpoint's own methods are `Pending` slots
that `bind_methods` fills from the loaded target. The defaults (tasks, gen_len, limit, batch size)
live here, next to the checks, so `accel bench` and `accel decode` share both.

No torch at import time: the CLI imports this module for its cheap checks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from accel.core.model_dir import read_config
from accel.data.long_tasks import LONG_BLOCK_LEN, LONG_GEN_LEN
from accel.decoding.errors import BenchError, GenLenError
from accel.decoding.methods import (DEFAULT_METHODS, DecodeMethod, MethodError, UnknownMethodError, UnusedOptionError,
                                    available, get_method, uses_cache)
from accel.models.backbone import BUILTIN, BUILTIN_KIND, BackboneError, adapter_world, detect_family, load_backbone

DEFAULT_LIMIT = 32
DEFAULT_BATCH_SIZE = 32
BUILTIN_GEN_LEN = 64
"""Built-in world answers are <= 20 tokens; 64 leaves room and stays fast."""
MODEL_GEN_LEN = 256
"""Real backbones (LLaDA, Dream, Llama...) write longer answers: the papers' setting."""


@dataclass
class Target:
    """A TARGET: its kind and methods, and once loaded (`load`) its backbone adapter."""
    spec: str
    adapter: object = None
    """The loaded backbone (None while only described)."""
    default_methods: list[str] = field(default_factory=list)
    recipe_methods: dict[str, Callable] = field(default_factory=dict)
    """{name: DecodeMethod} a checkpoint's recipe built for the loaded backbone (empty for plain models)."""
    checkpoint: object = None
    decode_defaults: dict = field(default_factory=dict)
    """A checkpoint's decode defaults (method, gen_len, block_len) from its recipe's spec."""
    default_batch_size: int = 0
    """The recipe's bench batch size when none is given (0: DEFAULT_BATCH_SIZE)."""
    kind: str = ""
    """'dllm' or 'ar' (taken from the adapter when not given)."""
    recipe: str = ""
    """A checkpoint's recipe name (for messages)."""
    offered: dict[str, str] = field(default_factory=dict)
    """{name: help} of a checkpoint's own methods, known before its weights load."""
    build_methods: Callable | None = None
    """build_methods(checkpoint, adapter) -> {name: DecodeMethod}: a checkpoint recipe's rows."""
    backbone: str = ""
    """What `load` loads: a checkpoint's backbone (empty: `spec` itself)."""

    def __post_init__(self):
        if not self.kind and self.adapter is not None:
            self.kind = self.adapter.kind

    def own_methods(self) -> list[str]:
        """A checkpoint's own method names, built or not."""
        return list(dict.fromkeys([*self.recipe_methods, *self.offered]))


@dataclass(frozen=True)
class Pending:
    """A checkpoint's own method chosen before its weights load; `bind_methods` puts the recipe's in."""
    name: str
    block_len = None


def check_target(spec: str) -> str:
    """Cheap validation before any model is loaded: 'dllm', 'ar' or 'checkpoint'."""
    if spec.startswith("builtin:"):
        if spec not in BUILTIN:
            raise BackboneError(f"unknown built-in model {spec!r}; choose {', '.join(BUILTIN)}")
        return BUILTIN_KIND[spec.split(":", 1)[1]]
    _, cfg_file, cfg = read_config(
        spec, BackboneError,
        absent="model directory {p} does not exist; pass builtin:dllm, builtin:ar, a local HF model directory or "
               "an exported accel checkpoint",
        not_dir="{p} is a file, not a model directory; pass the directory holding config.json",
        missing="{p} is not a model directory: no config.json in it (expected an HF model saved with "
                "save_pretrained, or an accel checkpoint)",
        invalid="{f} is not valid JSON: {e}")
    if not isinstance(cfg, dict):
        raise BackboneError(f"{cfg_file} is not a model config (expected a JSON object)")
    return "checkpoint" if "accel" in cfg else detect_family(cfg)[1]


def describe_model(spec: str, kind: str | None = None) -> Target:
    """A plain model TARGET (built-in or HF directory), not loaded: its kind's baseline methods."""
    kind = kind or check_target(spec)
    if kind == "checkpoint":
        raise BenchError(f"{spec} is an accel checkpoint: its methods come from its recipe; "
                         "describe or load it with accel.recipes.targets")
    return Target(spec=spec, kind=kind, default_methods=list(DEFAULT_METHODS[kind]))


def load(target: Target, trust_remote_code: bool = False, device: str | None = None,
         dtype: str | None = None) -> Target:
    """The described `target` with its backbone loaded onto `device` in `dtype` (None = as saved) and, for a
    checkpoint, the recipe's methods built on it (its drafts follow the backbone's dtype)."""
    adapter = load_backbone(target.backbone or target.spec, trust_remote_code=trust_remote_code,
                            device=device or default_device(), dtype=dtype)
    from accel.models.attention import use_gqa_attention
    use_gqa_attention(adapter.model)  # a forward of a few new tokens reads its cache in place (on a CPU)
    methods = dict(target.build_methods(target.checkpoint, adapter)) if target.build_methods else {}
    for name, m in methods.items():
        if not isinstance(m, DecodeMethod):
            raise TypeError(f"recipe {target.recipe!r}: bench_methods()[{name!r}] is a {type(m).__name__}, "
                            "not a DecodeMethod")
    defaults = [m for m in target.default_methods
                if adapter.supports_cache or not method_uses_cache(m, adapter.kind, methods)]
    # a model whose code ignores attention masks cannot batch padded prompts (`init_canvas`)
    one = 1 if adapter.extra.get("block_causal") is False else 0
    return dataclasses.replace(target, adapter=adapter, kind=adapter.kind, recipe_methods=methods,
                               default_methods=defaults, default_batch_size=one or target.default_batch_size)


def default_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def method_uses_cache(name: str, kind: str, recipe_methods: dict | None = None) -> bool:
    if recipe_methods and name in recipe_methods:
        return uses_cache(recipe_methods[name])
    return get_method(name, kind).uses_cache


def check_cache_support(target: Target, methods: dict[str, Callable]) -> None:
    """A backbone without a usable KV cache (`adapter.supports_cache` false: its family has none, or
    the load-time self-check found that the cached forward does not compute this model, e.g. an
    LLaDA config `llada_forward.unsupported` refuses) cannot run cached methods: one line naming
    the methods that do run. Nothing to check before the backbone loads."""
    if target.adapter is None or getattr(target.adapter, "supports_cache", True):
        return
    bad = [n for n, fn in methods.items() if uses_cache(fn)]
    if bad:
        own = target.own_methods()
        names = own + [m for m in available(target.kind) if m not in own]
        ok = [n for n in names if not method_uses_cache(n, target.kind, target.recipe_methods)]
        raise MethodError(f"{bad[0]} decodes with a KV cache, which the model code of {target.spec} "
                          f"({target.adapter.family}) does not support; methods that run: {', '.join(ok)}")


def select_methods(target: Target, names: list[str] | None = None, options: dict | None = None,
                   block_len: int | None = None) -> dict:
    """{name: DecodeMethod} for `names` (default: the target's defaults), recipe methods first.

    `options` go to every baseline method that declares the key (an option no selected method
    declares is an error); `block_len` overrides the block of every dLLM baseline method (default:
    the long world's block on a long-world teacher, else each method's own). On a target not yet
    loaded, a checkpoint's own methods are `Pending` (see `bind_methods`).
    """
    if block_len is None and adapter_world(target.adapter) == "long":
        block_len = LONG_BLOCK_LEN

    names = list(dict.fromkeys(names or target.default_methods))
    options = dict(options or {})
    if block_len is not None and target.kind == "dllm":
        options["block_len"] = block_len
    own = target.own_methods()
    out, used = {}, set()
    for name in names:
        if name in target.recipe_methods:
            m = target.recipe_methods[name]
            out[name] = m if m.name == name else dataclasses.replace(m, name=name)
            continue
        if name in own:
            out[name] = Pending(name)
            continue
        if name not in available(target.kind):
            valid = own + [m for m in available(target.kind) if m not in own]
            other = "ar" if target.kind == "dllm" else "dllm"
            hint = f" ({name!r} is a method for {other} models)" if name in available(other) else ""
            raise UnknownMethodError(name, target.spec, valid, hint)
        declared = get_method(name, target.kind).options
        mine = {k: v for k, v in options.items() if k in declared}
        used |= set(mine)
        out[name] = get_method(name, target.kind, mine)
    stray = set(options) - used - {"block_len"}
    if stray:
        raise UnusedOptionError(sorted(stray)[0], names)
    check_cache_support(target, out)
    return out


def bind_methods(target: Target, chosen: dict, block_len: int | None = None, defaulted: bool = False) -> dict:
    """The methods `select_methods` chose before `target` loaded, completed now that it has: the
    recipe's for `Pending` slots, the long world's block on a long-world teacher's baselines (unless
    `block_len` was given), and, where the choice was the target's defaults (`defaulted`), none of the
    cached methods a backbone without a KV cache cannot run (named ones are an error instead)."""
    long = block_len is None and target.kind == "dllm" and adapter_world(target.adapter) == "long"
    out = {}
    for name, m in chosen.items():
        if defaulted and name not in target.default_methods:
            continue
        if isinstance(m, Pending):
            m = target.recipe_methods[name]
            m = m if m.name == name else dataclasses.replace(m, name=name)
        elif long:
            m = dataclasses.replace(m, options={**m.options, "block_len": LONG_BLOCK_LEN})
        out[name] = m
    check_cache_support(target, out)
    return out


def check_gen_len(gen_len: int, methods: dict[str, Callable], checked: set | None = None) -> None:
    """Every block-based method needs gen_len to be a multiple of its block length. `checked`: the
    (gen_len, block) pairs already found fine, so that a request checks each pair once."""
    for name, fn in methods.items():
        b = getattr(fn, "block_len", None)
        if not b or (checked is not None and (gen_len, b) in checked):
            continue
        if gen_len % b:
            raise GenLenError(gen_len, b, method=name)
        if checked is not None:
            checked.add((gen_len, b))


def check_checkpoint_gen_len(target: Target, gen_len: int) -> None:
    """gen_len against the block length a checkpoint was exported with, before its weights load."""
    blk = int(target.decode_defaults.get("block_len") or 0)
    if target.checkpoint is not None and blk and gen_len % blk:
        raise GenLenError(gen_len, blk, owner=f"{target.recipe} checkpoint")


def default_tasks(adapter) -> list[str]:
    """The long suite for a long-world teacher, else the short suite ('all')."""
    return ["long"] if adapter_world(adapter) == "long" else ["all"]


def default_gen_len(adapter) -> int:
    """64 for models speaking the built-in world's tokenizer, the long world's canvas (128) on its teachers,
    256 for real backbones."""
    from accel.data.tokenizer import VOCAB
    if adapter_world(adapter) == "long":
        return LONG_GEN_LEN
    try:
        builtin = len(adapter.tokenizer) == len(VOCAB) and set(VOCAB) <= set(adapter.tokenizer.get_vocab())
    except (AttributeError, TypeError):
        builtin = False
    return BUILTIN_GEN_LEN if builtin or str(adapter.source).startswith("builtin:") else MODEL_GEN_LEN


def gen_len_of(target: Target, gen_len: int | None = None) -> int:
    """The generation length: the one asked for, else the checkpoint's exported one, else the model's default
    (`accel decode` and `accel bench` share it)."""
    g = target.decode_defaults.get("gen_len") if target.checkpoint is not None else None
    return gen_len or (int(g) if g else None) or default_gen_len(target.adapter)


def default_limit(gen_len: int, adapter) -> int:
    """Prompts per task when no limit is given: fewer for long generations on a CPU.

    One-token-per-step baselines cost gen_len full forwards per prompt, so a CPU run at gen 256
    with the usual 32 prompts per task would take the better part of an hour.
    """
    on_cpu = str(getattr(adapter, "device", "cpu")).startswith("cpu")
    return DEFAULT_LIMIT if not on_cpu or gen_len <= BUILTIN_GEN_LEN else max(4, DEFAULT_LIMIT * BUILTIN_GEN_LEN // gen_len)
