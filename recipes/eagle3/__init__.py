"""EAGLE-3: a one-layer draft model over three of the target's hidden states, trained with the
training-time test, decoded as a tree through the shared verifier, exported for vLLM/SGLang."""
from __future__ import annotations

from accel.recipes.eagle3.config import Config
from accel.recipes.eagle3.inference import DEFAULT_BATCH_SIZE, DEFAULT_METHODS, METHODS
from accel.recipes.eagle3.spec import Spec
from accel.recipes.recipe import Recipe, lazy

RECIPE = Recipe(
    name="eagle3", group="train",
    summary="EAGLE-3: a one-layer draft model on three target hidden states (training-time test), "
            "tree-verified decoding; exports for vLLM/SGLang (speculators format).",
    Config=Config, train=lazy("accel.recipes.eagle3.train:run"),
    exporters={"accel": lazy("accel.recipes.eagle3.export:export", format="accel"),
               "speculators": lazy("accel.recipes.eagle3.export:export", format="speculators")},
    Spec=Spec,
    bench_methods=lazy("accel.recipes.eagle3.inference:bench_methods"), default_methods=tuple(DEFAULT_METHODS),
    kind="ar", methods=dict(METHODS),
    default_batch_size=DEFAULT_BATCH_SIZE,
    docs="docs/recipes/eagle3.md",
)
