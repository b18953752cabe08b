"""Exporting a LoRA-distilled dLLM run (dParallel, D2F) as an inference checkpoint.

Both recipes leave the same run layout — RUN/<settings>.json, RUN/final (the merged HF model)
and RUN/final/adapter (peft adapters) — and export it the same two ways: "merged" (a full HF
directory, backbone ".") or "adapter" (the adapters only, the teacher as backbone).
"""
from __future__ import annotations

import json
from pathlib import Path

from accel.decoding.checkpoint import CheckpointError, save_checkpoint

FORMATS = ("merged", "adapter")
_SKIP = {"config.json", "model.safetensors", "model.safetensors.index.json", "adapter", "training_args.bin"}


def load_distilled_run(run_dir, recipe: str, settings_file: str, format: str) -> tuple[Path, dict]:
    """(RUN/final, the run's settings) after checking the format and that the run finished."""
    if format not in FORMATS:
        raise CheckpointError(f"--format {format}: {recipe} exports 'merged' (LoRA folded in, a full HF model) "
                              "or 'adapter' (LoRA adapters only)")
    run = Path(run_dir).expanduser()
    final = run / "final"
    if not (run / settings_file).exists() or not (final / "config.json").exists():
        raise CheckpointError(f"{run} has no finished model (final/ and {settings_file}); finish the run with "
                              f"`accel distill {recipe} --output {run}` (it resumes)")
    return final, json.loads((run / settings_file).read_text())


def save_distilled(final: Path, out_dir, format: str, recipe: str, teacher: str, decode: dict, section: dict,
                   no_adapter_hint: str, config_update=None, spec=None) -> Path:
    """Writes the merged model or the adapters with the accel section {recipe, decode, <recipe>: section},
    the recipe's `spec` (a CheckpointSpec) written into them.

    config_update(config) may edit the merged model's config.json (e.g. D2F's block-causal attention)."""
    from safetensors.torch import load_file

    run = final.parent
    if format == "merged":
        config = json.loads((final / "config.json").read_text())
        config.pop("accel", None)
        if config_update is not None:
            config_update(config)
        tensors = {}
        for f in sorted(final.glob("*.safetensors")):
            tensors.update(load_file(str(f)))
        extra = {f.name: f.read_bytes() for f in final.iterdir() if f.is_file() and f.name not in _SKIP
                 and not f.name.endswith(".safetensors")}
        accel = {"recipe": recipe, "backbone": ".", "decode": decode, recipe: section}
        return save_checkpoint(out_dir, accel, tensors=tensors, extra_files=extra, backbone_config=config, spec=spec)
    adir = final / "adapter"
    if not (adir / "adapter_model.safetensors").exists():
        raise CheckpointError(f"{run}{no_adapter_hint}")
    if str(teacher).startswith("random:"):
        raise CheckpointError(f"{run} distilled a random-init model ({teacher}), which an adapter export cannot "
                              "reference; use --format merged")
    accel = {"recipe": recipe, "backbone": teacher, "decode": decode, recipe: section}
    return save_checkpoint(out_dir, accel, tensors=load_file(str(adir / "adapter_model.safetensors")),
                           extra_files={"adapter_config.json": (adir / "adapter_config.json").read_bytes()},
                           weights_name="adapter_model.safetensors", spec=spec)
