"""Approximate joint sampling: a one-layer sampler for K tokens per full dLLM forward (ADJUST)."""
from __future__ import annotations

from accel.recipes.recipe import packaged

RECIPE = packaged(__name__, name="joint-sampler", group="train",
                  summary="Approximate joint sampling: a one-layer sampler for K tokens per full dLLM forward (ADJUST).")
