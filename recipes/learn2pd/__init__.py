"""Learn2PD: a ~2K-parameter learned unmask filter plus End-of-Text Prediction for dLLMs.

Pipeline (docs/recipes/learn2pd.md): `oracle` decodes training prompts twice with the teacher
(reference, then extremely-greedy-parallel) and stores per-step (confidence, label) vectors;
`model` is the filter and its BCE training; `decode` turns it into a block policy (with EoTP);
`kernels` fuses one decode step into a single Triton kernel; `export`/`inference` make it an
inference checkpoint that `accel decode` / `accel bench` load.
"""
from __future__ import annotations

from accel.recipes.learn2pd.data_commands import ORACLE
from accel.recipes.recipe import packaged

RECIPE = packaged(__name__, name="learn2pd", group="train",
                  summary="Learn2PD: a ~2K-param learned unmask filter + End-of-Text Prediction for a dLLM.",
                  data_commands=(ORACLE,))
