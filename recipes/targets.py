"""What a TARGET names, and the decode methods it offers: the bridge from the registry to the bench.

``builtin:dllm``/``builtin:ar`` and HF model directories are plain models with their kind's
baselines (`accel.decoding.methods`); an accel checkpoint names its recipe in config.json, and
that recipe supplies its method names, defaults and rows (`bench_methods`). `describe_target`
reads all that without loading weights (the CLI's checks run on it); `load_target` loads any
target with `accel.decoding.target.load`, the one loading function. `accel bench`, `accel decode`
and tests load targets here, then hand them to `accel.decoding.bench` / `accel.decoding.plan`.
"""
from __future__ import annotations

from accel.decoding.checkpoint import load_checkpoint
from accel.decoding.errors import BenchError
from accel.decoding.methods import describe
from accel.decoding.target import Target, check_target, describe_model, load
from accel.recipes import get, normalize


def checkpoint_recipe(spec: str):
    """The registry's Recipe for an accel checkpoint (cheap: config.json only), or BenchError."""
    from accel.recipes import PLANNED, RECIPES  # read when called: `register` rebinds RECIPES
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


def describe_target(spec: str) -> Target:
    """A TARGET (built-in, model directory or accel checkpoint) as far as it is known without its weights:
    kind, method names and defaults, a checkpoint's decode defaults (`load_target` loads it)."""
    kind = check_target(spec)
    if kind != "checkpoint":
        return describe_model(spec, kind)
    recipe = checkpoint_recipe(spec)
    ckpt = load_checkpoint(spec)
    return Target(spec=spec, kind=recipe.kind, default_methods=list(recipe.default_methods), checkpoint=ckpt,
                  decode_defaults=ckpt.decode_defaults(recipe.Spec), default_batch_size=recipe.default_batch_size,
                  recipe=recipe.name, offered=dict(recipe.methods), build_methods=recipe.bench_methods,
                  backbone=ckpt.backbone_target())


def method_names(spec: str) -> tuple[str, dict[str, str], list[str]]:
    """(kind, {method: help}, default methods) of a TARGET without loading any weights."""
    t = describe_target(spec)
    names = {**t.offered, **{k: v for k, v in describe(t.kind).items() if k not in t.offered}}
    return t.kind, names, list(t.default_methods)


def load_target(target: str | Target, trust_remote_code: bool = False, device: str | None = None,
                dtype: str | None = None) -> Target:
    """Loads a TARGET (a spec, or one `describe_target` described) onto `device` in `dtype`
    (`accel.models.backbone.DTYPES`; None = as saved)."""
    described = target if isinstance(target, Target) else describe_target(target)
    return load(described, trust_remote_code, device, dtype)
