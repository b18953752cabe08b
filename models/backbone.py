"""Backbone adapters: what each model family needs the decoders and recipes to know.

A decoder never asks "is this LLaDA?": it asks the adapter for the mask id, the end ids and
logits aligned so that ``logits[:, i]`` predicts token ``i`` (dLLMs) or ``i + 1`` (AR).

Families (`accel.models.families`, one class each: how to load and call the model; docs/backbones.md): LLaDA
(mask 126336, unshifted, ``attention_bias``, cached forwards computed by accel), Dream (mask 151666, shifted:
``logits[i-1]`` predicts token ``i``), the built-in tiny dLLM (tokenizer's mask, either
alignment, recorded in ``config.accel_dllm``), and any HF causal LM. Shipped model code is
probed after loading (`accel.models.selfcheck`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from accel.core.errors import UserError
from accel.models import selfcheck
from accel.models.families import detect, get_family
from accel.models.families.base import quiet_load
from accel.models.weightfiles import WeightFileError, check_model_dir
from accel.models.weights import builtin_dir

BUILTIN = ("builtin:dllm", "builtin:ar", "builtin:dllm-long", "builtin:ar-long")
"""The shipped tiny teachers: the short world's pair, and the long-answer world's pair
(docs/long-world.md), which is built with `accel teacher build dllm-long|ar-long` (CPU hours)."""
BUILTIN_KIND = {"dllm": "dllm", "ar": "ar", "dllm-long": "dllm", "ar-long": "ar"}
"""Built-in name -> backbone kind."""
LONG_WORLD = "long"
"""`accel_world` in a long teacher's config.json: bench and evaluate default to the long tasks."""


class BackboneError(UserError, ValueError):
    """A target that cannot be loaded; the message says what to do."""


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

    @property
    def family_spec(self):
        """The `accel.models.families.Family` that knows how to call this model."""
        return get_family(self.family)

    @property
    def supports_cache(self) -> bool:
        """Whether KV-cached decoding runs: the family's code has a cache and the self-check passed it."""
        return bool(self.extra.get("cache", self.family_spec.supports_cache))

    @property
    def n_tokens(self) -> int:
        """Ids the tokenizer can decode; logit rows at and above it (padded vocabularies) are no token."""
        return len(self.tokenizer)

    def forward(self, ids, mask4d=None, pos=None, past_key_values=None, use_cache: bool = False,
                output_hidden_states: bool = False, model=None):
        """One forward in the family's own interface; returns (aligned logits, ForwardOut).

        Aligned: ``logits[:, i]`` predicts token ``i`` (dLLMs; Dream's shifted logits are moved
        back one place, the first position keeping its own). `model` overrides the adapter's
        (a peft/DDP wrapper of it, during training). ``out.past_key_values`` is the cache the
        forward filled, whether or not the model returns it.
        """
        out = self.family_spec.forward(self.model if model is None else model, ids, mask4d, pos,
                                       past_key_values=past_key_values, use_cache=use_cache,
                                       output_hidden_states=output_hidden_states)
        logits = out.logits
        if self.shift_logits:
            import torch
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return logits, out

    def decodable(self, logits):
        """In place: rows past the tokenizer (padded vocabulary) get -inf, so no decoder emits them."""
        if logits.shape[-1] > self.n_tokens:
            logits[..., self.n_tokens:] = -float("inf")
        return logits

    def dllm_logits(self, input_ids, attention_mask, position_ids=None, past_key_values=None, use_cache=False):
        """Forward a dLLM for decoding: (aligned logits with undecodable rows at -inf, ForwardOut).

        attention_mask is the 4D bool mask from `accel.models.masks`.
        """
        logits, out = self.forward(input_ids, attention_mask, position_ids, past_key_values=past_key_values,
                                   use_cache=use_cache)
        return self.decodable(logits), out


def backbone_ref(target: str) -> str:
    """builtin:* as is; a directory as an absolute path (a checkpoint must find it from anywhere)."""
    return target if target.startswith("builtin:") else str(Path(target).expanduser().resolve())


def device_of(name: str) -> str:
    """'auto' → cuda when available, else cpu; anything else as given."""
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def adapter_world(adapter) -> str:
    """'long' for a long-world teacher (its config says so), else 'short': sets bench defaults."""
    cfg = getattr(getattr(adapter, "model", None), "config", None)
    return LONG_WORLD if getattr(cfg, "accel_world", None) == LONG_WORLD else "short"


def _read_config(path: Path) -> dict:
    cfg_file = path / "config.json"
    if not path.exists():
        raise BackboneError(f"model directory {path} does not exist; pass builtin:dllm, builtin:ar (or their -long "
                            "twins) or a local HF model directory")
    if not path.is_dir():
        raise BackboneError(f"{path} is a file, not a model directory; pass the directory holding config.json")
    if not cfg_file.exists():
        raise BackboneError(f"{path} is not a model directory: no config.json in it (expected an HF model saved with save_pretrained)")
    try:
        return json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise BackboneError(f"{cfg_file} is not valid JSON: {e}") from None


def _native(cfg: dict) -> bool:
    """Whether transformers knows the config's model type without the shipped code."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    return str(cfg.get("model_type", "")) in CONFIG_MAPPING


def detect_family(cfg: dict) -> tuple[str, str]:
    """(family, kind) from a config dict."""
    fam = detect(cfg)
    return fam.name, fam.kind


DTYPES = {"auto": None, "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
"""``--dtype`` names -> torch dtype names; auto = the dtype config.json records (an imported model's
``--dtype``). On CPUs with AVX512-BF16, bf16 matmuls run several times faster than fp32 for a few rows
(a tree verification), but bf16 decoding is not bit-identical across batch shapes (docs/recipes/medusa.md)."""


def check_dtype(name: str | None) -> None:
    """One line naming --dtype when `name` is not a DTYPES key (before any model loads)."""
    if name is not None and name not in DTYPES:
        raise BackboneError(f"--dtype {name}: choose one of {', '.join(DTYPES)}")


def load_backbone(target: str, trust_remote_code: bool = False, device: str | None = None, dtype: str | None = None,
                  check: bool = True) -> Adapter:
    """Loads `target` (``builtin:dllm``, ``builtin:ar`` or a local HF directory) as an Adapter.

    dtype: a `DTYPES` name (None or "auto": as saved).

    Model code shipped with a checkpoint (LLaDA, Dream) runs only with trust_remote_code, is
    made loadable under transformers 5 by its family (`accel.models.families`) and is probed
    after loading (`accel.models.selfcheck`; check=False skips that). Any failure is one
    BackboneError line.
    """
    if target.startswith("builtin:"):
        kind = target.split(":", 1)[1]
        if kind not in BUILTIN_KIND:
            raise BackboneError(f"unknown built-in model {target!r}; choose {', '.join(BUILTIN)}")
        path = builtin_dir(kind)
        if not (path / "model.safetensors").exists():
            if kind.endswith("-long"):
                first = "" if kind == "ar-long" or (builtin_dir("ar-long") / "model.safetensors").exists() \
                    else "`accel teacher build ar-long` then "
                raise BackboneError(f"{target} is not built yet; build it with {first}`accel teacher build {kind}` "
                                    "(a budget of 90 CPU-minutes for both, resumable: docs/long-world.md)")
            raise BackboneError(f"the built-in {kind} teacher is not in this install ({path}); build it with `accel teacher build {kind}`")
    else:
        path = Path(target).expanduser()
    cfg = _read_config(path)
    fam = detect(cfg)
    remote = "auto_map" in cfg
    if remote and not trust_remote_code and (fam.name in ("llada", "dream") or not _native(cfg)):
        # (without this, transformers would stop and ask on stdin)
        raise BackboneError(f"{path} is a {fam.name} checkpoint whose code ships with the weights; "
                            "re-run with --trust-remote-code (config key trust_remote_code=true) if you trust "
                            "that directory")
    try:
        check_model_dir(path)
    except WeightFileError as e:
        raise BackboneError(str(e)) from None
    check_dtype(dtype)
    kw = dict(trust_remote_code=trust_remote_code)
    if DTYPES.get(dtype or "auto") is not None:
        import torch
        kw["dtype"] = getattr(torch, DTYPES[dtype])
    from transformers import AutoTokenizer
    try:
        with quiet_load():
            tokenizer = AutoTokenizer.from_pretrained(str(path), **kw)
            model = fam.load_model(path, cfg, **kw)
            fam.after_load(model)
    except Exception as e:  # noqa: BLE001 - shipped model code can raise anything; the user gets one line
        msg = (str(e).strip().splitlines() or [""])[0]
        raise BackboneError(f"could not load a model from {path}: {type(e).__name__}: {msg}") from None
    fam.silence()
    model.eval()
    if device:
        model.to(device)
    if fam.name == "builtin":
        meta = cfg["accel_dllm"]
        mask_id, shift = int(meta["mask_token_id"]), bool(meta.get("shift_logits", False))
    elif fam.kind == "dllm":
        mask_id, shift = int(cfg.get("mask_token_id") or fam.mask_id), fam.shift_logits
    else:
        mask_id, shift = None, False
    source = target if target.startswith("builtin:") else str(path)
    adapter = Adapter(model=model, tokenizer=tokenizer, family=fam.name, kind=fam.kind, source=source,
                      mask_id=mask_id, shift_logits=shift, eos_ids=fam.end_ids(tokenizer, cfg),
                      extra={"trust_remote_code": bool(trust_remote_code)})
    if check:
        try:
            with quiet_load():  # also spends the model code's once-per-process warnings
                selfcheck.run(adapter, fingerprint=remote)
        except selfcheck.SelfCheckError as e:
            raise BackboneError(str(e)) from None
    return adapter
