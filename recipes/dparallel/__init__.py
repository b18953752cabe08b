"""dParallel: certainty-forcing self-distillation (LoRA) for entropy-threshold parallel decoding."""
from __future__ import annotations

from accel.recipes.recipe import packaged
from accel.recipes.shared.data_commands import TRAJECTORIES

RECIPE = packaged(__name__, name="dparallel", group="distill",
                  summary="dParallel: certainty-forcing self-distillation (LoRA) for entropy-threshold parallel decoding.",
                  formats=("merged", "adapter"), data_commands=(TRAJECTORIES,))
