"""Medusa: K parallel draft heads on an AR model (Medusa-1 frozen / Medusa-2 LoRA), tree verification."""
from __future__ import annotations

from accel.recipes.recipe import packaged
from accel.recipes.shared.data_commands import SELF_DISTILL

RECIPE = packaged(__name__, name="medusa", group="train",
                  summary="Medusa: K parallel draft heads on an AR model (Medusa-1 frozen / Medusa-2 LoRA), tree verification.",
                  formats=("accel", "vllm", "medusa"), kind="ar", data_commands=(SELF_DISTILL,))
