"""LoRA through peft: wrap, save adapters on their own, merge back into the base.

Trainer saves a `PeftModel` as adapters only (``adapter_model.safetensors`` +
``adapter_config.json``), so checkpoints stay small; `merge_lora` folds them into the base
weights for export (what dParallel/D2F ship).
"""
from __future__ import annotations

from accel.models.families import detect

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def apply_lora(model, r: int = 8, alpha: float = 16, dropout: float = 0.0, target_modules=DEFAULT_TARGETS):
    """A peft `PeftModel` around `model` with LoRA on `target_modules`; only adapters train. Llama
    names the model lacks become its family's names for the same layers (`Family.lora_targets`)."""
    from peft import LoraConfig, get_peft_model

    from accel.trainers.config import ConfigError
    if r < 1:
        raise ConfigError(f"lora_r={r}: must be >= 1 to apply LoRA")
    target_modules, exclude = family_of(model).lora_targets(model, target_modules)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in target_modules if t not in names]
    if missing:
        raise ConfigError(f"lora_target_modules: {missing} not found in the model; available leaf modules "
                          f"include {sorted(n for n in names if n)[:12]}")
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                     exclude_modules=exclude or None, bias="none")
    return get_peft_model(model, cfg)


def family_of(model):
    """The model family (`accel.models.families`) of a loaded model, from its config."""
    cfg = getattr(model, "config", None)
    return detect(cfg.to_dict() if hasattr(cfg, "to_dict") else {})


def save_adapter(peft_model, out_dir) -> None:
    """Adapters only (safetensors), loadable with `load_adapter`."""
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)


def load_adapter(base_model, adapter_dir, trainable: bool = False):
    from peft import PeftModel
    return PeftModel.from_pretrained(base_model, str(adapter_dir), is_trainable=trainable)


def merge_lora(peft_model):
    """The base model with the adapters folded into its weights (a plain transformers model)."""
    return peft_model.merge_and_unload()
