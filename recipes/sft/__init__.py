"""Supervised fine-tuning of a dLLM (masked-diffusion loss) or AR model on the suite or jsonl."""
from __future__ import annotations

from accel.recipes.recipe import Recipe, lazy
from accel.recipes.sft.config import Config

RECIPE = Recipe(
    name="sft", group="train",
    summary="Supervised fine-tuning of a dLLM (masked-diffusion loss) or AR model on the suite or jsonl.",
    Config=Config, train=lazy("accel.recipes.sft.train:run"),
    exporters={},
    docs="docs/recipes/sft.md",
)
