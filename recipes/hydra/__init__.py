"""Hydra/Hydra++: sequentially dependent draft heads on a frozen AR model, tree-verified decoding."""
from __future__ import annotations

from accel.recipes.hydra.config import Config
from accel.recipes.hydra.inference import DEFAULT_BATCH_SIZE, DEFAULT_METHODS, METHODS
from accel.recipes.hydra.spec import Spec
from accel.recipes.recipe import Recipe, lazy

RECIPE = Recipe(
    name="hydra", group="train",
    summary="Hydra/Hydra++: sequentially dependent draft heads on a frozen AR model, tree-verified decoding.",
    Config=Config, train=lazy("accel.recipes.hydra.train:run"),
    exporters={"accel": lazy("accel.recipes.hydra.export:export")},
    Spec=Spec,
    bench_methods=lazy("accel.recipes.hydra.inference:bench_methods"), default_methods=tuple(DEFAULT_METHODS),
    kind="ar", methods=dict(METHODS),
    default_batch_size=DEFAULT_BATCH_SIZE,
    docs="docs/recipes/hydra.md",
)
