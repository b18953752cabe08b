"""Medusa: K parallel draft heads on an AR model (Medusa-1 frozen / Medusa-2 LoRA), tree verification."""
from __future__ import annotations

from accel.recipes.medusa.config import Config
from accel.recipes.medusa.inference import DEFAULT_BATCH_SIZE, DEFAULT_METHODS, METHODS
from accel.recipes.medusa.spec import Spec
from accel.recipes.recipe import Recipe, lazy

RECIPE = Recipe(
    name="medusa", group="train",
    summary="Medusa: K parallel draft heads on an AR model (Medusa-1 frozen / Medusa-2 LoRA), tree verification.",
    Config=Config, train=lazy("accel.recipes.medusa.train:run"),
    exporters={"accel": lazy("accel.recipes.medusa.export:export", format="accel"),
               "vllm": lazy("accel.recipes.medusa.export:export", format="vllm"),
               "medusa": lazy("accel.recipes.medusa.export:export", format="medusa")},
    Spec=Spec, bench_methods=lazy("accel.recipes.medusa.inference:bench_methods"), default_methods=tuple(DEFAULT_METHODS),
    kind="ar", methods=dict(METHODS),
    default_batch_size=DEFAULT_BATCH_SIZE,
    docs="docs/recipes/medusa.md",
)
