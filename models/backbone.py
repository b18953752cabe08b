"""Backbone adapters: what each model family needs the decoders and recipes to know.

A decoder never asks "is this LLaDA?": it asks the adapter for the mask id, the end ids and
logits aligned so that ``logits[:, i]`` predicts token ``i`` (dLLMs) or ``i + 1`` (AR).

Families (ALGORITHMS.md): LLaDA (mask 126336, unshifted), Dream (mask 151666, shifted:
``logits[i-1]`` predicts token ``i``), the built-in tiny dLLM (tokenizer's mask, either
alignment, recorded in ``config.accel_dllm``), and any HF causal LM.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

BUILTIN = ("builtin:dllm", "builtin:ar")


class BackboneError(ValueError):
    """A target that cannot be loaded; the message says what to do."""


def builtin_dir(kind: str) -> Path:
    """Directory of a shipped tiny teacher (``dllm`` or ``ar``)."""
    return Path(str(resources.files("accel.models") / "builtin" / kind))


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_STAMP_BYTES = 1 << 20


def weights_stamp(source: str) -> str:
    """A cheap identity of the weights behind a model source, for caches built from a teacher.

    Trajectories, Learn2PD oracle data and joint-sampler states key on it beside the teacher's
    name, so a rebuilt ``builtin:dllm`` or an overwritten model directory cannot silently reuse
    data made by other weights. It hashes each weight file's name, size and first and last MiB
    (instant on an 8B checkpoint; retrained weights change every tensor). '' when there are no
    files (``random:*``).
    """
    if source.startswith("builtin:"):
        path = builtin_dir(source.split(":", 1)[1])
    elif source.startswith("random:"):
        return ""
    else:
        path = Path(source).expanduser()
    files = sorted(f for f in path.glob("*") if f.suffix in WEIGHT_SUFFIXES and f.is_file()) if path.is_dir() else []
    if not files:
        return ""
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(_STAMP_BYTES))
            if size > _STAMP_BYTES:
                fh.seek(max(_STAMP_BYTES, size - _STAMP_BYTES))
                h.update(fh.read(_STAMP_BYTES))
    return h.hexdigest()[:16]


@dataclass
class Adapter:
    model: object
    tokenizer: object
    family: str
    """'builtin', 'llada', 'dream', 'causal-lm'."""
    kind: str
    """'dllm' (masked diffusion) or 'ar' (causal)."""
    source: str
    """Where it was loaded from: 'builtin:dllm', or a directory path."""
    mask_id: int | None = None
    shift_logits: bool = False
    eos_ids: tuple[int, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def pad_id(self) -> int:
        pid = self.tokenizer.pad_token_id
        return self.eos_ids[0] if pid is None else pid

    def dllm_logits(self, input_ids, attention_mask, position_ids=None, past_key_values=None, use_cache=False):
        """Forward a dLLM; returns (logits aligned to predict each input position, output).

        attention_mask is the 4D bool mask from `accel.decoding.masks` for HF-native models.
        """
        from accel.models.kv import cache_kwargs
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=use_cache, **cache_kwargs(self.model, past_key_values))
        logits = out.logits
        if self.shift_logits:
            # Dream convention: logits[i-1] predicts token i; the first position keeps its own.
            import torch
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return logits, out


def backbone_ref(target: str) -> str:
    """builtin:* as is; a directory as an absolute path (a checkpoint must find it from anywhere)."""
    return target if target.startswith("builtin:") else str(Path(target).expanduser().resolve())


def device_of(name: str) -> str:
    """'auto' → cuda when available, else cpu; anything else as given."""
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _read_config(path: Path) -> dict:
    cfg_file = path / "config.json"
    if not path.exists():
        raise BackboneError(f"model directory {path} does not exist; pass builtin:dllm, builtin:ar or a local HF model directory")
    if not path.is_dir():
        raise BackboneError(f"{path} is a file, not a model directory; pass the directory holding config.json")
    if not cfg_file.exists():
        raise BackboneError(f"{path} is not a model directory: no config.json in it (expected an HF model saved with save_pretrained)")
    try:
        return json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise BackboneError(f"{cfg_file} is not valid JSON: {e}") from None


def detect_family(cfg: dict) -> tuple[str, str]:
    """(family, kind) from a config dict."""
    mt = str(cfg.get("model_type", "")).lower()
    if "accel_dllm" in cfg:
        return "builtin", "dllm"
    if "llada" in mt:
        return "llada", "dllm"
    if "dream" in mt:
        return "dream", "dllm"
    return "causal-lm", "ar"


def load_backbone(target: str, trust_remote_code: bool = False, device: str | None = None, dtype=None) -> Adapter:
    """Loads `target` (``builtin:dllm``, ``builtin:ar`` or a local HF directory) as an Adapter."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    if target.startswith("builtin:"):
        kind = target.split(":", 1)[1]
        if kind not in ("dllm", "ar"):
            raise BackboneError(f"unknown built-in model {target!r}; choose builtin:dllm or builtin:ar")
        path = builtin_dir(kind)
        if not (path / "model.safetensors").exists():
            raise BackboneError(f"the built-in {kind} teacher is not in this install ({path}); build it with `accel teacher build {kind}`")
    else:
        path = Path(target).expanduser()
    cfg = _read_config(path)
    family, kind = detect_family(cfg)
    needs_remote = family in ("llada", "dream") and "auto_map" in cfg
    if needs_remote and not trust_remote_code:
        raise BackboneError(f"{path} is a {family} checkpoint whose code ships with the weights; "
                            "re-run with --trust-remote-code if you trust that directory")
    from accel.models.weightfiles import WeightFileError, check_model_dir
    try:
        check_model_dir(path)
    except WeightFileError as e:
        raise BackboneError(str(e)) from None
    kw = dict(trust_remote_code=trust_remote_code)
    if dtype is not None:
        kw["dtype"] = dtype
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), **kw)
        if family == "causal-lm" or family == "builtin":
            model = AutoModelForCausalLM.from_pretrained(str(path), **kw)
        else:
            model = AutoModel.from_pretrained(str(path), **kw)
    except (OSError, ValueError) as e:
        raise BackboneError(f"could not load a model from {path}: {str(e).splitlines()[0]}") from None
    model.eval()
    if device:
        model.to(device)
    eos = tokenizer.eos_token_id
    eos_ids = tuple(i for i in [eos] if i is not None)
    if family == "builtin":
        meta = cfg["accel_dllm"]
        mask_id, shift = int(meta["mask_token_id"]), bool(meta.get("shift_logits", False))
    elif family == "llada":
        mask_id, shift, eos_ids = 126336, False, (126081, 126348)
    elif family == "dream":
        mask_id, shift = cfg.get("mask_token_id", 151666), True
    else:
        mask_id, shift = None, False
    source = target if target.startswith("builtin:") else str(path)
    return Adapter(model=model, tokenizer=tokenizer, family=family, kind=kind, source=source,
                   mask_id=mask_id, shift_logits=shift, eos_ids=eos_ids)
