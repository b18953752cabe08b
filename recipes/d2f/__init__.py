"""D2F: asymmetric block-causal distillation (LoRA) for pipelined parallel decoding with an exact KV cache."""
from __future__ import annotations

from accel.recipes.d2f.config import Config
from accel.recipes.d2f.inference import DEFAULT_METHODS, METHODS
from accel.recipes.d2f.spec import Spec
from accel.recipes.recipe import Recipe, lazy

RECIPE = Recipe(
    name="d2f", group="distill",
    summary="D2F: asymmetric block-causal distillation (LoRA) for pipelined parallel decoding with an exact KV cache.",
    Config=Config, train=lazy("accel.recipes.d2f.train:run"),
    exporters={"merged": lazy("accel.recipes.d2f.export:export", format="merged"),
               "adapter": lazy("accel.recipes.d2f.export:export", format="adapter")},
    Spec=Spec,
    bench_methods=lazy("accel.recipes.d2f.inference:bench_methods"), default_methods=tuple(DEFAULT_METHODS),
    kind="dllm", methods=dict(METHODS),
    docs="docs/recipes/d2f.md",
)
