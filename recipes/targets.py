"""What a TARGET names, and the decode methods it offers: the bridge from the registry to the bench.

``builtin:dllm``/``builtin:ar`` and HF model directories are plain models with their kind's
baselines (`accel.decoding.methods`); an accel checkpoint names its recipe in config.json, and
that recipe's `bench_methods` supplies its rows. `accel bench`, `accel decode` and tests load
targets here, then hand them to the harness (`accel.decoding.bench.run_bench`).
"""
from __future__ import annotations

from accel.decoding.bench import BenchError, Target, method_uses_cache, check_target, default_device, load_model_target


def checkpoint_recipe(spec: str):
    """The registry's Recipe for an accel checkpoint (cheap: config.json only), or BenchError."""
    from accel.decoding.checkpoint import load_checkpoint
    from accel.recipes import PLANNED, RECIPES, get, normalize
    name = load_checkpoint(spec).recipe
    try:
        recipe = get(name)
    except KeyError:
        if normalize(name) in PLANNED:
            raise BenchError(f"the checkpoint's recipe {name!r} is not built in this version of accel") from None
        raise BenchError(f"the checkpoint's recipe {name!r} is unknown to this accel "
                         f"(known: {', '.join(r.name for r in RECIPES)}); upgrade accel or re-export") from None
    if recipe.bench_methods is None:
        raise BenchError(f"recipe {recipe.name!r} has no decode methods in this version of accel; "
                         "it cannot decode its checkpoints")
    return recipe


def method_names(spec: str) -> tuple[str, dict[str, str], list[str]]:
    """(kind, {method: help}, default methods) of a TARGET without loading any weights."""
    from accel.decoding.methods import DEFAULT_METHODS, describe
    kind = check_target(spec)
    if kind != "checkpoint":
        return kind, describe(kind), list(DEFAULT_METHODS[kind])
    recipe = checkpoint_recipe(spec)
    names = {**recipe.methods, **{k: v for k, v in describe(recipe.kind).items() if k not in recipe.methods}}
    return recipe.kind, names, list(recipe.default_methods)


def load_target(spec: str, trust_remote_code: bool = False, device: str | None = None,
                dtype: str | None = None) -> Target:
    """Loads a TARGET (built-in, model directory or accel checkpoint) onto `device` in `dtype`
    (`accel.models.backbone.DTYPES`; None = as saved); a checkpoint's drafts follow the backbone's dtype."""
    from accel.decoding.checkpoint import load_checkpoint
    from accel.decoding.methods import DecodeMethod
    from accel.models.backbone import load_backbone

    if check_target(spec) != "checkpoint":
        return load_model_target(spec, trust_remote_code, device, dtype)
    recipe = checkpoint_recipe(spec)
    ckpt = load_checkpoint(spec)
    adapter = load_backbone(ckpt.backbone_target(), trust_remote_code=trust_remote_code,
                            device=device or default_device(), dtype=dtype)
    methods = dict(recipe.bench_methods(ckpt, adapter))
    for name, m in methods.items():
        if not isinstance(m, DecodeMethod):
            raise TypeError(f"recipe {recipe.name!r}: bench_methods()[{name!r}] is a {type(m).__name__}, "
                            "not a DecodeMethod")
    defaults = [m for m in recipe.default_methods if adapter.supports_cache or not method_uses_cache(m, adapter, methods)]
    one = 1 if adapter.extra.get("block_causal") is False else 0  # padded batches need a working mask
    return Target(spec=spec, adapter=adapter, default_methods=defaults, recipe_methods=methods,
                  checkpoint=ckpt, decode_defaults=ckpt.decode_defaults(recipe.Spec),
                  default_batch_size=one or recipe.default_batch_size)
