"""D2F: asymmetric block-causal distillation (LoRA) for pipelined parallel decoding with an exact KV cache."""
from __future__ import annotations

from accel.recipes.recipe import packaged
from accel.recipes.shared.data_commands import TRAJECTORIES

RECIPE = packaged(__name__, name="d2f", group="distill",
                  summary="D2F: asymmetric block-causal distillation (LoRA) for pipelined parallel decoding with an exact KV cache.",
                  formats=("merged", "adapter"), data_commands=(TRAJECTORIES,))
