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

from accel.decoding.checkpoint import CheckpointError
from accel.decoding.distilled import FORMATS, load_distilled_run, save_distilled  # noqa: F401 (FORMATS: the choices)
from accel.recipes.d2f.train import SETTINGS_FILE

_SECTION_KEYS = ("teacher", "family", "seed", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                 "min_ratio", "max_ratio", "train_gen_len", "steps", "trajectories")


def export(run_dir, out_dir, format: str = "merged", gen_len: int | None = None, **overrides) -> Path:
    """Writes the checkpoint; tau_add / tau_act / tau_conf / gen_len override the run's decode settings."""
    bad = [k for k in overrides if k not in ("tau_add", "tau_act", "tau_conf")]
    if bad:
        raise CheckpointError(f"d2f export has no option {bad[0]!r}; its options are: format, gen_len, "
                              "tau_add, tau_act, tau_conf")
    final, s = load_distilled_run(run_dir, "d2f", SETTINGS_FILE, format)
    taus = {k: float(overrides.get(k, s[k])) for k in ("tau_add", "tau_act", "tau_conf")}
    for k, v in taus.items():
        if not 0 <= v <= 1:
            raise CheckpointError(f"{k}={v}: must be in [0, 1]")
    decode = {"method": "d2f", "block_len": int(s["block_len"]), **taus, "gen_len": int(gen_len or s.get("train_gen_len") or 256),
              "cache": True}
    section_s = {k: s[k] for k in _SECTION_KEYS if k in s}
    section_s.update(block_len=int(s["block_len"]), format=format, **taus)

    def block_causal(config):
        if isinstance(config.get("accel_dllm"), dict):
            config["accel_dllm"] = {**config["accel_dllm"], "attention": "block-causal",
                                    "block_len": int(s["block_len"])}

    return save_distilled(final, out_dir, format, "d2f", s["teacher"], decode, section_s,
                          f"/final has no LoRA adapters (final/adapter); re-run `accel distill d2f --output "
                          f"{final.parent}` or use --format merged", config_update=block_causal)
