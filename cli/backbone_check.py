"""The right kind of backbone for a recipe (`Recipe.backbone_kinds`), checked from the name or
config.json before any model loads or any run directory is made: a dLLM recipe on builtin:ar (or an
AR draft recipe on builtin:dllm) used to fail only after loading the model, leaving a half-made run
directory behind."""
from __future__ import annotations

from pathlib import Path

from accel.models.backbone import BackboneError, _read_config, detect_family

_WORDS = {"dllm": "a diffusion LM (builtin:dllm, LLaDA, Dream)",
          "ar": "an autoregressive model (builtin:ar, Llama, ...)"}


def backbone_kind(spec: str) -> str | None:
    """'dllm' / 'ar' for builtin:, random: and local model directories; None when unknown (left to the loader)."""
    if spec.startswith(("builtin:", "random:")):
        kind = spec.split(":", 1)[1]
        return kind if kind in ("dllm", "ar") else None
    try:
        return detect_family(_read_config(Path(spec).expanduser()))[1]
    except (BackboneError, OSError, ValueError, KeyError, TypeError):
        return None


def _recipes_for(kind: str) -> str:
    """The commands of the recipes that train on `kind`, grouped as `accel train a|b / accel distill c`."""
    from accel.recipes import RECIPES  # read when called: `register` rebinds it
    groups: dict[str, list[str]] = {}
    for r in RECIPES:
        if r.backbone_kinds == (kind,):
            groups.setdefault(r.group, []).append(r.name)
    return " / ".join(f"accel {g} {'|'.join(names)}" for g, names in groups.items())


def check_backbone(recipe, cfg) -> str | None:
    """A one-line error message when cfg.backbone is a kind `recipe` (a `Recipe`) does not train on, else None."""
    spec = getattr(cfg, "backbone", None)
    if not isinstance(spec, str):
        return None
    have = backbone_kind(spec)
    kinds = recipe.backbone_kinds
    if have is None or have in kinds:
        return None
    need = kinds[0]
    other = "builtin:dllm" if need == "dllm" else "builtin:ar"
    return (f"backbone={spec} is {_WORDS[have]}, but {recipe.name} needs {_WORDS[need]}: set backbone={other} or "
            f"another {need} model (for this backbone: {_recipes_for(have)})")
