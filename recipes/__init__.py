"""The recipe registry: the one place that maps a recipe name to its code.

Adding a recipe = a folder under recipes/ whose ``__init__.py`` exports ``RECIPE`` (see
`accel.recipes.recipe.Recipe`) + one line in ``RECIPES`` below; or a folder anywhere, registered
with `register` or a Python entry point in the group ``accel.recipes`` (``name = "package:RECIPE"``),
which this module loads when it is imported, so `accel` knows the recipe from start-up. Every
consumer (`accel train|distill|data|export|bench|decode|slurm`) looks recipes up here, through
`RECIPES` and `get`/`lookup`.
"""
from __future__ import annotations

import difflib
import sys
from importlib.metadata import entry_points

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

ENTRY_POINTS = "accel.recipes"
"""The entry-point group of recipes installed from other distributions (a Recipe, or a module with RECIPE)."""


def register(recipe: Recipe) -> Recipe:
    """Add a recipe that lives outside this package. The CLI builds its `train`/`distill`/`data`
    commands from `RECIPES` when it is imported, so register before importing `accel.cli` (an entry
    point does this by itself); `get`, `lookup`, export and bench see it at once."""
    global RECIPES
    if not isinstance(recipe, Recipe):
        raise TypeError(f"register() takes a Recipe, not {type(recipe).__name__}")
    if any(r.name == recipe.name for r in RECIPES):
        raise ValueError(f"a recipe named {recipe.name!r} is already registered")
    RECIPES = RECIPES + (recipe,)
    return recipe


def _register_entry_points() -> None:
    """Every recipe installed under the ``accel.recipes`` entry-point group; one that fails to load
    is reported on stderr and skipped, so a broken plug-in does not take the CLI down."""
    for ep in entry_points(group=ENTRY_POINTS):
        try:
            obj = ep.load()
            register(obj if isinstance(obj, Recipe) else obj.RECIPE)
        except Exception as e:  # noqa: BLE001 - any plug-in failure is reported, not fatal
            print(f"warning: recipe entry point {ep.name} = {ep.value} not loaded: {e}", file=sys.stderr)


_register_entry_points()

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
