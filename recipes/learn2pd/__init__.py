"""Learn2PD: a ~2K-parameter learned unmask filter plus End-of-Text Prediction for dLLMs.

Pipeline (docs/recipes/learn2pd.md): `oracle` decodes training prompts twice with the teacher
(reference, then extremely-greedy-parallel) and stores per-step (confidence, label) vectors;
`model` is the filter and its BCE training; `decode` turns it into a block policy (with EoTP);
`kernels` fuses one decode step into a single Triton kernel; `export`/`inference` make it an
inference checkpoint that `accel decode` / `accel bench` load.
"""
from __future__ import annotations

from accel.recipes.learn2pd.config import Config
from accel.recipes.learn2pd.inference import DEFAULT_METHODS, METHODS
from accel.recipes.learn2pd.spec import Spec
from accel.recipes.recipe import Recipe, lazy

RECIPE = Recipe(
    name="learn2pd", group="train",
    summary="Learn2PD: a ~2K-param learned unmask filter + End-of-Text Prediction for a dLLM.",
    Config=Config, train=lazy("accel.recipes.learn2pd.train:run"),
    exporters={"accel": lazy("accel.recipes.learn2pd.export:export")},
    Spec=Spec,
    bench_methods=lazy("accel.recipes.learn2pd.inference:bench_methods"), default_methods=tuple(DEFAULT_METHODS),
    kind="dllm", methods=dict(METHODS),
    docs="docs/recipes/learn2pd.md",
)
