"""The one explicit list of recipes. Adding a recipe = a folder under recipes/ + one line here.

Each recipe package `accel.recipes.<name>` provides:
- `config.py`:    `Config` (a `accel.trainers.config.TrainConfig` subclass)
- `train.py`:     `run(cfg: Config) -> pathlib.Path` (the run directory)
- `export.py`:    `export(run_dir, out_dir, **options) -> pathlib.Path` (an inference checkpoint)
- `inference.py`: `DEFAULT_METHODS: list[str]` (bench rows, first = the baseline) and
                  `bench_methods(ckpt, adapter) -> dict[str, MethodFn]`, MethodFn(adapter, prompts, gen_len) -> DecodeResult
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecipeEntry:
    name: str
    group: str
    """CLI group: 'train' or 'distill'."""
    module: str
    summary: str


RECIPES: list[RecipeEntry] = [
    RecipeEntry("sft", "train", "accel.recipes.sft",
                "Supervised fine-tuning of a dLLM (masked-diffusion loss) or AR model on the suite or jsonl."),
    RecipeEntry("learn2pd", "train", "accel.recipes.learn2pd",
                "Learn2PD: a ~2K-param learned unmask filter + End-of-Text Prediction for a dLLM."),
]

PLANNED = {
    "dparallel": "distill", "d2f": "distill", "medusa": "train", "hydra": "train", "joint-sampler": "train",
}
"""Recipes on the roadmap: the CLI says they are not built yet instead of pretending."""


def get(name: str) -> RecipeEntry:
    for r in RECIPES:
        if r.name == name:
            return r
    raise KeyError(name)
