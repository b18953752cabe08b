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
    RecipeEntry("dparallel", "distill", "accel.recipes.dparallel",
                "dParallel: certainty-forcing self-distillation (LoRA) for entropy-threshold parallel decoding."),
    RecipeEntry("d2f", "distill", "accel.recipes.d2f",
                "D2F: asymmetric block-causal distillation (LoRA) for pipelined parallel decoding with an exact KV cache."),
    RecipeEntry("hydra", "train", "accel.recipes.hydra",
                "Hydra/Hydra++: sequentially dependent draft heads on a frozen AR model, tree-verified decoding."),
    RecipeEntry("eagle3", "train", "accel.recipes.eagle3",
                "EAGLE-3: a one-layer draft over three target hidden states (training-time test), tree decoding, "
                "speculators/vLLM export."),
    RecipeEntry("medusa", "train", "accel.recipes.medusa",
                "Medusa: K parallel draft heads on an AR model (Medusa-1 frozen / Medusa-2 LoRA), tree verification."),
    RecipeEntry("joint-sampler", "train", "accel.recipes.joint_sampler",
                "Approximate joint sampling: a one-layer sampler for K tokens per full dLLM forward (ADJUST)."),
]

PLANNED: dict[str, str] = {}
"""Recipes on the roadmap: the CLI says they are not built yet instead of pretending."""


def get(name: str) -> RecipeEntry:
    for r in RECIPES:
        if r.name == name:
            return r
    raise KeyError(name)
