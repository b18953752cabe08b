"""`accel export RUN --out DIR` for D2F: the distilled model as an inference checkpoint.

format="merged" (default): the LoRA folded into the base (RUN/final), a full HF directory —
config.json (the backbone's, its ``accel_dllm.attention`` set to "block-causal", plus the
"accel" section), model.safetensors, tokenizer files — loadable by `load_backbone(DIR)` and
benched by `accel bench DIR` (backbone "."). format="adapter": only the LoRA adapters (peft
layout) with the teacher as backbone; the bench applies them at load time. Both record the
decode settings (block size, tau_add, tau_act, tau_conf) and the undistilled teacher the
baselines run on.
"""
from __future__ import annotations

from pathlib import Path

from accel.decoding.checkpoint import check_options, override_spec
import dataclasses

from accel.recipes.d2f.spec import Spec
from accel.recipes.d2f.train import SETTINGS_FILE
from accel.recipes.shared.run_export import load_distilled_run, read_run_spec, save_distilled

_PROVENANCE = ("family", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "min_ratio", "max_ratio",
               "train_gen_len", "steps", "trajectories")


def export(run_dir, out_dir, format: str = "merged", **overrides) -> Path:
    """Writes the checkpoint; tau_add / tau_act / tau_conf / gen_len (the spec's settable fields) override
    the run's decode settings."""
    check_options(Spec, overrides, "d2f")
    final, s = load_distilled_run(run_dir, "d2f", SETTINGS_FILE, format)
    spec = dataclasses.replace(read_run_spec(final.parent, Spec, s, renamed={"gen_len": "train_gen_len"}), format=format)
    spec = override_spec(spec, overrides, "d2f")

    def block_causal(config):
        if isinstance(config.get("accel_dllm"), dict):
            config["accel_dllm"] = {**config["accel_dllm"], "attention": "block-causal", "block_len": spec.block_len}

    return save_distilled(final, out_dir, format, "d2f", s["teacher"], {}, {k: s[k] for k in _PROVENANCE if k in s},
                          f"/final has no LoRA adapters (final/adapter); re-run `accel distill d2f --output "
                          f"{final.parent}` or use --format merged", config_update=block_causal, spec=spec)
