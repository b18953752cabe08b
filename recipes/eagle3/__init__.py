"""EAGLE-3: a one-layer draft model over three of the target's hidden states, trained with the
training-time test, decoded as a tree through the shared verifier, exported for vLLM/SGLang."""
from __future__ import annotations

from accel.recipes.recipe import packaged

RECIPE = packaged(__name__, name="eagle3", group="train",
                  summary="EAGLE-3: a one-layer draft model on three target hidden states (training-time test), "
                          "tree-verified decoding; exports for vLLM/SGLang (speculators format).",
                  formats=("accel", "speculators"), kind="ar")
