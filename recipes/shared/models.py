"""Loading the model a recipe trains on, and saving the trained model as a loadable HF directory.

`load_model(cfg)` reads ``cfg.backbone`` (``builtin:dllm|ar``, a local HF directory, or
``random:dllm|ar``: a tiny random-init model for smoke tests); `save_final` writes RUN/final,
the directory `load_backbone` and `accel export` read.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from accel.core.errors import UserError
from accel.core.files import atomic_dir
from accel.data.tokenizer import build_tokenizer
from accel.models.backbone import Adapter, load_backbone
from accel.models.tiny import make_model
from accel.trainers.lora import merge_lora, save_adapter
from accel.trainers.rundir import prepare_run_dir


def load_model(cfg):
    """An Adapter for cfg.backbone; ``random:dllm|ar`` builds a tiny random-init model."""
    if cfg.backbone.startswith("random:"):
        kind = cfg.backbone.split(":", 1)[1]
        if kind not in ("dllm", "ar"):
            raise UserError(f"backbone={cfg.backbone}: use random:dllm or random:ar")
        tok = build_tokenizer()
        model = make_model(kind, tok, seed=cfg.seed, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=2, intermediate_size=64)
        return Adapter(model=model, tokenizer=tok, family="builtin", kind=kind, source=cfg.backbone,
                       mask_id=tok.mask_token_id if kind == "dllm" else None, eos_ids=(tok.eos_token_id,))
    return load_backbone(cfg.backbone, trust_remote_code=cfg.trust_remote_code)


def save_final(model, tok, out: Path, lora: bool) -> Path:
    """A loadable HF dir; LoRA adapters also kept in out/adapter before merging."""
    with atomic_dir(out, may_replace=lambda p: True) as tmp:
        if lora:
            save_adapter(model, tmp / "adapter")
            model = merge_lora(model)
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
    return out


def frozen_ar_target(cfg, recipe: str, what: str):
    """(run_dir, adapter, base) for a recipe that trains a draft on a frozen AR model (Hydra, EAGLE-3).

    Sets the thread count, prepares the run dir, loads the backbone (refusing a diffusion LM in one line
    that says what the recipe drafts, `what`), places it on this rank's GPU when there is one and freezes
    it: `base` is the model in eval mode with no gradients.
    """
    cfg.set_threads()
    run_dir = prepare_run_dir(cfg, recipe)
    adapter = load_model(cfg)
    if adapter.kind != "ar":
        raise UserError(f"backbone={cfg.backbone} is a diffusion LM; {what} for AR models "
                        "(use builtin:ar, random:ar or a causal-LM directory)")
    if torch.cuda.is_available():
        adapter.model.to(torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))))
    return run_dir, adapter, adapter.model.eval().requires_grad_(False)


def with_frozen_base(name: str, trainable, base):
    """The module handed to `fit`: `trainable` as its only submodule (attribute `name`, so checkpoints
    hold ``name.*`` keys), the frozen base reachable as `.base` but kept out of parameters() and
    state_dict() (a tuple hides it from torch's module registry)."""
    class WithFrozenBase(torch.nn.Module):
        def __init__(self):
            super().__init__()
            setattr(self, name, trainable)
            self._base = (base,)

        @property
        def base(self):
            return self._base[0]

    return WithFrozenBase()
