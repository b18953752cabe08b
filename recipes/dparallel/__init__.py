"""dParallel: certainty-forcing self-distillation (LoRA) for entropy-threshold parallel decoding."""
from __future__ import annotations

from accel.recipes.dparallel.config import Config
from accel.recipes.dparallel.inference import DEFAULT_METHODS, METHODS
from accel.recipes.dparallel.spec import Spec
from accel.recipes.recipe import Recipe, lazy

RECIPE = Recipe(
    name="dparallel", group="distill",
    summary="dParallel: certainty-forcing self-distillation (LoRA) for entropy-threshold parallel decoding.",
    Config=Config, train=lazy("accel.recipes.dparallel.train:run"),
    exporters={"merged": lazy("accel.recipes.dparallel.export:export", format="merged"),
               "adapter": lazy("accel.recipes.dparallel.export:export", format="adapter")},
    Spec=Spec,
    bench_methods=lazy("accel.recipes.dparallel.inference:bench_methods"), default_methods=tuple(DEFAULT_METHODS),
    kind="dllm", methods=dict(METHODS),
    docs="docs/recipes/dparallel.md",
)
