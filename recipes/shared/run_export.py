"""What every recipe's exporter shares: reading the run back (its settings JSON and the typed `Spec`
training recorded), and writing the checkpoint.

- A trained module beside a frozen backbone the checkpoint only references (Learn2PD's filter, the
  joint sampler's layer; the drafts' RUN/final is read the same way): `read_run`, `save_referencing`.
- A LoRA-distilled dLLM (dParallel, D2F): RUN/<settings>.json, RUN/final (the merged HF model) and
  RUN/final/adapter (peft adapters), exported "merged" (a full HF directory, backbone ".") or
  "adapter" (the adapters only, the teacher as backbone): `load_distilled_run`, `save_distilled`.
- A directory in another project's layout (vLLM, the Medusa repository): `write_model_dir`.

Training writes its `Spec` with `write_run_spec` (RUN/spec.json) and the exporter reads it back typed
with `read_run_spec`, so a setting's default lives in the Spec alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from accel.core.files import atomic_dir, save_tensors, write_atomic
from accel.decoding.checkpoint import CheckpointError, save_checkpoint
from accel.decoding.spec import SpecError

RUN_SPEC = "spec.json"
"""RUN/spec.json: the checkpoint spec training recorded ({section: {key: value}}, as in config.json)."""
DISTILLED_FORMATS = ("merged", "adapter")
_SKIP = {"config.json", "model.safetensors", "model.safetensors.index.json", "adapter", "training_args.bin"}


def write_run_spec(run_dir, spec) -> Path:
    """Record the run's `spec` (a CheckpointSpec) for its export; it must read back (checked here)."""
    type(spec).from_sections(spec.sections())
    return write_atomic(Path(run_dir) / RUN_SPEC, json.dumps(spec.sections(), indent=2) + "\n")


def read_run_spec(run_dir, spec_cls, settings: dict, renamed: dict[str, str] | None = None):
    """The `spec_cls` training recorded in RUN/spec.json, typed and validated. A run trained before
    spec.json existed is read from its `settings` JSON by the field names, `renamed` {field: settings
    key} where the settings spelled one otherwise."""
    f = Path(run_dir).expanduser() / RUN_SPEC
    if f.is_file():
        sections = json.loads(f.read_text())
    else:
        old = {**settings, **{k: settings[v] for k, v in (renamed or {}).items() if settings.get(v) is not None}}
        sections = {spec_cls.SECTION: old, "decode": old}
    try:
        return spec_cls.from_sections(sections)
    except SpecError as e:
        raise CheckpointError(f"{f if f.is_file() else Path(run_dir) / 'settings'}: {e}") from None


def read_run(run_dir, weights: str, settings: str, recipe: str, missing: str) -> tuple[Path, dict]:
    """(run dir, its settings JSON) once RUN/`weights` and RUN/`settings` exist, else a CheckpointError
    naming what is `missing` and how to finish the run (training resumes)."""
    run = Path(run_dir).expanduser()
    if not (run / settings).exists() or not (run / weights).exists():
        raise CheckpointError(f"{run} has no {missing} ({weights}); finish the run with "
                              f"`accel train {recipe} --output {run}` (it resumes)")
    return run, json.loads((run / settings).read_text())


def accel_only(format: str | None, recipe: str) -> None:
    """CheckpointError unless `format` is the accel format (the default)."""
    if format not in (None, "accel"):
        raise CheckpointError(f"--format {format}: {recipe} exports only the accel format")


def save_referencing(out_dir, recipe: str, run: Path, settings: dict, spec, weights: str, metrics: str) -> Path:
    """The checkpoint: RUN/`weights`, the spec, RUN/`metrics` when the run wrote it, and the settings'
    backbone as a reference (not copied)."""
    extra = {metrics: (run / metrics).read_text()} if (run / metrics).exists() else {}
    return save_checkpoint(out_dir, {"recipe": recipe, "backbone": settings["backbone"]}, spec=spec,
                           tensors=load_file(str(run / weights)), extra_files=extra)


def load_distilled_run(run_dir, recipe: str, settings_file: str, format: str) -> tuple[Path, dict]:
    """(RUN/final, the run's settings) after checking the format and that the run finished."""
    if format not in DISTILLED_FORMATS:
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


def write_model_dir(out, files: dict[str, bytes | str], tensors: dict[str, dict]) -> Path:
    """A directory in another project's layout, written atomically (temp dir, then rename): `files`
    {name: content} and `tensors` {file name: state dict} (``.pt``: a torch pickle, for loaders that
    read nothing else; otherwise safetensors). Never replaces a non-empty directory that is not a model."""
    out = Path(out).expanduser().absolute()
    with atomic_dir(out, may_replace=lambda p: p.is_dir() and (not any(p.iterdir()) or (p / "config.json").exists()),
                    refuse=f"{out} exists and is not a model directory; choose another --out or remove it") as tmp:
        for name, t in tensors.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            if name.endswith(".pt"):
                torch.save({k: v.contiguous() for k, v in t.items()}, str(tmp / name))
            else:
                save_tensors({k: v.contiguous() for k, v in t.items()}, tmp / name, metadata={"format": "pt"})
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return out
