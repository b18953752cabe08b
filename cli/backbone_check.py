"""The right kind of backbone for a recipe, checked from the name or config.json before any model
loads or any run directory is made: Learn2PD on builtin:ar (or Medusa on builtin:dllm) used to
fail only after loading the model, leaving a half-made run directory behind."""
from __future__ import annotations

from pathlib import Path

NEEDS = {"learn2pd": "dllm", "dparallel": "dllm", "d2f": "dllm", "joint-sampler": "dllm",
         "medusa": "ar", "hydra": "ar"}
_WORDS = {"dllm": "a diffusion LM (builtin:dllm, LLaDA, Dream)",
          "ar": "an autoregressive model (builtin:ar, Llama, ...)"}
_FOR = {"dllm": "accel train learn2pd / accel distill dparallel|d2f / accel train joint-sampler",
        "ar": "accel train medusa|hydra"}


def backbone_kind(spec: str) -> str | None:
    """'dllm' / 'ar' for builtin:, random: and local model directories; None when unknown (left to the loader)."""
    if spec.startswith(("builtin:", "random:")):
        kind = spec.split(":", 1)[1]
        return kind if kind in ("dllm", "ar") else None
    from accel.models.backbone import BackboneError, _read_config, detect_family
    try:
        return detect_family(_read_config(Path(spec).expanduser()))[1]
    except (BackboneError, OSError, ValueError, KeyError, TypeError):
        return None


def check_backbone(recipe: str, cfg) -> str | None:
    """A one-line error message when cfg.backbone is the wrong kind for `recipe`, else None."""
    need = NEEDS.get(recipe)
    spec = getattr(cfg, "backbone", None)
    if need is None or not isinstance(spec, str):
        return None
    have = backbone_kind(spec)
    if have is None or have == need:
        return None
    other = "builtin:dllm" if need == "dllm" else "builtin:ar"
    return (f"backbone={spec} is {_WORDS[have]}, but {recipe} needs {_WORDS[need]}: set backbone={other} or "
            f"another {need} model (for this backbone: {_FOR[have]})")
