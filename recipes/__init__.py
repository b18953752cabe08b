"""The recipe registry: the one place that maps a recipe name to its code.

Adding a recipe = a folder under recipes/ whose ``__init__.py`` exports ``RECIPE`` (see
`accel.recipes.recipe.Recipe`) + one line in ``RECIPES`` below. Every consumer (`accel
train|distill|export|bench|decode|slurm`) looks recipes up here, through `get`/`lookup`.
"""
from __future__ import annotations

import difflib

from accel.core.errors import UserError
from accel.recipes import d2f, dparallel, eagle3, hydra, joint_sampler, learn2pd, medusa, sft
from accel.recipes.recipe import Recipe

RECIPES: tuple[Recipe, ...] = (
    sft.RECIPE,
    learn2pd.RECIPE,
    dparallel.RECIPE,
    d2f.RECIPE,
    hydra.RECIPE,
    medusa.RECIPE,
    joint_sampler.RECIPE,
    eagle3.RECIPE,
)

PLANNED: dict[str, str] = {}
"""Recipes on the roadmap ({name: group}): the CLI says they are not built yet instead of pretending."""


class RecipeError(UserError, KeyError):
    """An unknown or not-yet-built recipe name; the message lists the built ones."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def normalize(name: str) -> str:
    """The canonical spelling: lower case, '-' between words (joint_sampler -> joint-sampler)."""
    return str(name).strip().lower().replace("_", "-")


def get(name: str) -> Recipe:
    """The recipe called `name` (any spelling); KeyError when there is none."""
    key = normalize(name)
    for r in RECIPES:
        if r.name == key:
            return r
    raise KeyError(name)


def lookup(name: str, context: str = "") -> Recipe:
    """`get`, or a RecipeError in one line: not built yet / unknown (with a suggestion) + the built ones."""
    try:
        return get(name)
    except KeyError:
        pass
    key = normalize(name)
    built = ", ".join(r.name for r in RECIPES)
    where = f"{context}: " if context else ""
    if key in PLANNED:
        raise RecipeError(f"{where}recipe {key!r} is not built yet in this version of accel; built recipes: {built}")
    close = difflib.get_close_matches(key, [r.name for r in RECIPES] + list(PLANNED), n=2)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise RecipeError(f"{where}unknown recipe {name!r}; {hint}built recipes: {built}")


def by_group(group: str) -> list[Recipe]:
    return [r for r in RECIPES if r.group == group]
