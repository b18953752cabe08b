"""The inference-checkpoint format: what `accel export` writes and `accel decode`/`bench` read.

An HF-style directory::

    config.json        {...backbone config (optional)..., "accel": {format_version, recipe,
                        backbone, decode, weights, ...recipe fields}}
    model.safetensors  the recipe's tensors (a filter, LoRA-merged weights, draft heads, ...)
    <extra files>      whatever the recipe adds (tokenizer files, a vLLM config, ...)

The decode defaults and recipe fields are the recipe's typed spec (`accel.decoding.spec`):
`save_checkpoint(..., spec=)` writes it, `InferenceCheckpoint.spec(Spec)` reads it back.
The ``"accel"`` section is what makes a model directory an accel checkpoint; ``backbone`` is
``builtin:dllm``/``builtin:ar``, a directory, or a path relative to the checkpoint (``"."``
when the checkpoint itself is a full model). Weights are safetensors only — nothing is ever
unpickled — and writes are atomic: a half-written checkpoint never replaces a good one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from accel.core.errors import UserError
from accel.core.files import atomic_dir, save_tensors
from accel.core.model_dir import read_config
from accel.decoding.spec import SpecError
from accel.models.weightfiles import WeightFileError, check_safetensors

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(UserError, ValueError):
    """A directory that is not a readable accel checkpoint; the message says what to do."""


@dataclass
class InferenceCheckpoint:
    path: Path
    accel: dict
    """The config's "accel" section."""
    config: dict
    """The whole config.json (backbone config fields included)."""

    @property
    def recipe(self) -> str:
        return self.accel["recipe"]

    @property
    def decode(self) -> dict:
        """Decode defaults recorded at export (e.g. method, gen_len, block_len, threshold)."""
        return dict(self.accel.get("decode") or {})

    @property
    def weight_files(self) -> list[str]:
        return list(self.accel.get("weights") or [])

    def spec(self, cls):
        """The recipe's typed spec (a `accel.decoding.spec.CheckpointSpec` subclass) read from config.json;
        a missing or ill-typed field is one CheckpointError naming the file and the re-export."""
        try:
            return cls.from_sections(self.accel)
        except SpecError as e:
            raise CheckpointError(f"{self.path / 'config.json'}: the {self.recipe} checkpoint {e}; re-export it "
                                  f"with `accel export RUN --out {self.path}`") from None

    def decode_defaults(self, spec_cls=None) -> dict:
        """{method, gen_len, block_len} (those it has) that `accel decode`/`bench` start from: read from
        the recipe's typed spec, or from the raw "decode" section for a recipe without one."""
        if spec_cls is None:
            return self.decode
        spec = self.spec(spec_cls)
        return {k: getattr(spec, k) for k in ("method", "gen_len", "block_len") if getattr(spec, k, None) is not None}

    def backbone_target(self) -> str:
        """The backbone as a load_backbone target; relative paths are relative to the checkpoint."""
        b = str(self.accel["backbone"])
        if b.startswith("builtin:") or Path(b).expanduser().is_absolute():
            return b
        return str((self.path / b).resolve())

    def tensors(self, file: str | None = None, device: str = "cpu") -> dict:
        """All weight tensors (or those of one weight file), loaded with safetensors."""
        from safetensors.torch import load_file
        files = [file] if file else self.weight_files
        out = {}
        for name in files:
            out.update(load_file(str(self.path / name), device=device))
        return out


def is_checkpoint(path: str | Path) -> bool:
    """True when `path` is a directory whose config.json has an "accel" section (cheap: no torch)."""
    cfg = Path(path).expanduser() / "config.json"
    try:
        return "accel" in json.loads(cfg.read_text())
    except (OSError, ValueError, TypeError):
        return False


def load_checkpoint(path: str | Path) -> InferenceCheckpoint:
    """Reads and validates an inference checkpoint (weights are loaded lazily by `.tensors()`, but their
    files are checked here, so a truncated one is one line rather than a loader traceback)."""
    p, cfg_file, config = read_config(
        path, CheckpointError,
        absent="checkpoint directory {p} does not exist; export one with `accel export RUN --out DIR`",
        not_dir="{p} is a file; pass the checkpoint directory (the one holding config.json)",
        missing="{p} has no config.json, so it is not an accel checkpoint; export one with "
                "`accel export RUN --out DIR`",
        invalid="{f} is not valid JSON ({e}); re-export the checkpoint")
    if not isinstance(config, dict) or "accel" not in config:
        raise CheckpointError(f"{p} is a model directory, not an accel checkpoint (no \"accel\" section in "
                              "config.json); use it as a TARGET directly or export a run with `accel export`")
    accel = config["accel"]
    if not isinstance(accel, dict):
        raise CheckpointError(f"{cfg_file}: the \"accel\" section must be an object; re-export the checkpoint")
    version = accel.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{p} has accel format_version {version!r} but this accel reads version "
                              f"{FORMAT_VERSION}; use a matching accel release or re-export the run")
    for key in ("recipe", "backbone"):
        if not accel.get(key):
            raise CheckpointError(f"{cfg_file}: the \"accel\" section has no {key!r}; re-export the checkpoint")
    ckpt = InferenceCheckpoint(path=p, accel=accel, config=config)
    for name in ckpt.weight_files:
        if not (p / name).is_file():
            raise CheckpointError(f"{p} is incomplete: weight file {name} is missing; re-export the checkpoint")
        if not name.endswith(".safetensors"):
            raise CheckpointError(f"{p}: weight file {name} is not safetensors; accel never unpickles weights")
        try:
            check_safetensors(p / name, "re-export the checkpoint with `accel export RUN --out DIR`")
        except WeightFileError as e:
            raise CheckpointError(str(e)) from None
    return ckpt


def save_checkpoint(out_dir: str | Path, accel_section: dict, tensors: dict | None = None,
                    extra_files: dict[str, bytes | str] | None = None, backbone_config: dict | None = None,
                    weights_name: str = WEIGHTS_NAME, spec=None) -> Path:
    """Writes an inference checkpoint atomically and returns its path.

    Everything goes to a temp directory beside `out_dir` (fsynced); only once it is complete is
    an existing checkpoint moved aside and the new one renamed into place. A directory that is
    not an accel checkpoint is never replaced (that would delete someone's files). `spec` (a
    `CheckpointSpec`) is written into the sections its fields name, after the keys already there.
    """
    out = Path(out_dir).expanduser().absolute()
    for key in ("recipe", "backbone"):
        if not accel_section.get(key):
            raise CheckpointError(f"accel section needs a {key!r} entry")
    if out.exists() and not (out.is_dir() and (is_checkpoint(out) or not any(out.iterdir()))):
        raise CheckpointError(f"{out} exists and is not an accel checkpoint; choose another --out or remove it")
    reserved = {"config.json", weights_name}
    for name in extra_files or {}:
        if name in reserved or "/" in name or "\\" in name or name.startswith("."):
            raise CheckpointError(f"extra file name {name!r} is reserved or not a plain file name")
    section = {"format_version": FORMAT_VERSION, **accel_section}
    if spec is not None:
        section = _with_spec(section, spec)
    section.setdefault("decode", {})
    section["format_version"] = FORMAT_VERSION
    if tensors:
        section["weights"] = [weights_name]
    else:
        section.setdefault("weights", [])
    config = dict(backbone_config or {})
    config["accel"] = section

    with atomic_dir(out, may_replace=lambda p: p.is_dir() and (is_checkpoint(p) or not any(p.iterdir()))) as tmp:
        if tensors:
            save_tensors(_unshare(tensors), tmp / weights_name, metadata={"format": "pt"})
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data.encode() if isinstance(data, str) else data)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
    return out


def check_options(spec_cls, overrides: dict, recipe: str) -> None:
    """CheckpointError on an export option that is not one of the spec's settable fields (exporters
    call it first, so a typo is reported before the run is read)."""
    try:
        spec_cls.check_options(overrides, recipe)
    except SpecError as e:
        raise CheckpointError(str(e)) from None


def override_spec(spec, overrides: dict, recipe: str):
    """An exporter's spec with the `accel export --set` overrides (None: keep) applied and validated."""
    try:
        return spec.with_overrides(overrides, recipe)
    except SpecError as e:
        raise CheckpointError(str(e)) from None


def _with_spec(section: dict, spec) -> dict:
    """`section` with the spec's fields written in (checked: what is written must read back)."""
    try:
        type(spec).from_sections(spec.sections())
    except SpecError as e:
        raise CheckpointError(f"{section.get('recipe')} export: {e}") from None
    out = dict(section)
    for name, values in spec.sections().items():
        out[name] = {**(out.get(name) or {}), **values}
    return out


def _unshare(tensors: dict) -> dict:
    """safetensors refuses tensors sharing storage (tied embeddings): copy the repeats, contiguous on CPU."""
    seen, out = set(), {}
    for k, v in tensors.items():
        t = v.detach().to("cpu").contiguous()
        if t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out



