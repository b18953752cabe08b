"""Supervised fine-tuning of a dLLM (masked-diffusion loss) or AR model on the suite or jsonl."""
from __future__ import annotations

from pathlib import Path

from accel.recipes.recipe import Recipe, lazy, shipped_configs
from accel.recipes.sft.config import Config

RECIPE = Recipe(
    name="sft", group="train",
    summary="Supervised fine-tuning of a dLLM (masked-diffusion loss) or AR model on the suite or jsonl.",
    Config=Config, train=lazy("accel.recipes.sft.train:run"),
    exporters={},
    docs="docs/recipes/sft.md", trains_on=("dllm", "ar"), config_dir=shipped_configs("sft", Path(__file__).parent),
)
