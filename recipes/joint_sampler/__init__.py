"""Approximate joint sampling: a one-layer sampler for K tokens per full dLLM forward (ADJUST)."""
from __future__ import annotations

from accel.recipes.joint_sampler.config import Config
from accel.recipes.joint_sampler.inference import DEFAULT_METHODS, METHODS
from accel.recipes.joint_sampler.spec import Spec
from accel.recipes.recipe import Recipe, lazy

RECIPE = Recipe(
    name="joint-sampler", group="train",
    summary="Approximate joint sampling: a one-layer sampler for K tokens per full dLLM forward (ADJUST).",
    Config=Config, train=lazy("accel.recipes.joint_sampler.train:run"),
    exporters={"accel": lazy("accel.recipes.joint_sampler.export:export")},
    Spec=Spec,
    bench_methods=lazy("accel.recipes.joint_sampler.inference:bench_methods"), default_methods=tuple(DEFAULT_METHODS),
    kind="dllm", methods=dict(METHODS),
    docs="docs/recipes/joint-sampler.md",
)
