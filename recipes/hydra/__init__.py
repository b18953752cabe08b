"""Hydra/Hydra++: sequentially dependent draft heads on a frozen AR model, tree-verified decoding."""
from __future__ import annotations

from accel.recipes.recipe import packaged
from accel.recipes.shared.data_commands import SELF_DISTILL

RECIPE = packaged(__name__, name="hydra", group="train",
                  summary="Hydra/Hydra++: sequentially dependent draft heads on a frozen AR model, tree-verified decoding.",
                  kind="ar", data_commands=(SELF_DISTILL,))
