"""Loading the model a recipe trains on, and saving the trained model as a loadable HF directory.

`load_model(cfg)` reads ``cfg.backbone`` (``builtin:dllm|ar``, a local HF directory, or
``random:dllm|ar``: a tiny random-init model for smoke tests); `save_final` writes RUN/final,
the directory `load_backbone` and `accel export` read.
"""
from __future__ import annotations

from pathlib import Path


def load_model(cfg):
    """An Adapter for cfg.backbone; ``random:dllm|ar`` builds a tiny random-init model."""
    from accel.models.backbone import Adapter, load_backbone
    if cfg.backbone.startswith("random:"):
        from accel.core.errors import UserError
        from accel.data.tokenizer import build_tokenizer
        from accel.models.tiny import make_model
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
    from accel.core.files import atomic_dir
    with atomic_dir(out, may_replace=lambda p: True) as tmp:
        if lora:
            from accel.trainers.lora import merge_lora, save_adapter
            save_adapter(model, tmp / "adapter")
            model = merge_lora(model)
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
    return out
