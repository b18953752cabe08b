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

import json
from pathlib import Path

from accel.decoding.checkpoint import CheckpointError, save_checkpoint
from accel.recipes.d2f.train import SETTINGS_FILE

FORMATS = ("merged", "adapter")
_SKIP = {"config.json", "model.safetensors", "model.safetensors.index.json", "adapter", "training_args.bin"}
_SECTION_KEYS = ("teacher", "family", "seed", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                 "min_ratio", "max_ratio", "train_gen_len", "steps", "trajectories")


def export(run_dir, out_dir, format: str = "merged", gen_len: int | None = None, **overrides) -> Path:
    """Writes the checkpoint; tau_add / tau_act / tau_conf / gen_len override the run's decode settings."""
    from safetensors.torch import load_file

    bad = [k for k in overrides if k not in ("tau_add", "tau_act", "tau_conf")]
    if bad:
        raise CheckpointError(f"d2f export has no option {bad[0]!r}; its options are: format, gen_len, "
                              "tau_add, tau_act, tau_conf")
    if format not in FORMATS:
        raise CheckpointError(f"--format {format}: d2f exports 'merged' (LoRA folded in, a full HF model) "
                              "or 'adapter' (LoRA adapters only)")
    run = Path(run_dir).expanduser()
    final = run / "final"
    if not (run / SETTINGS_FILE).exists() or not (final / "config.json").exists():
        raise CheckpointError(f"{run} has no finished model (final/ and {SETTINGS_FILE}); finish the run with "
                              f"`accel distill d2f --output {run}` (it resumes)")
    s = json.loads((run / SETTINGS_FILE).read_text())
    taus = {k: float(overrides.get(k, s[k])) for k in ("tau_add", "tau_act", "tau_conf")}
    for k, v in taus.items():
        if not 0 <= v <= 1:
            raise CheckpointError(f"{k}={v}: must be in [0, 1]")
    decode = {"method": "d2f", "block_len": int(s["block_len"]), **taus, "gen_len": int(gen_len or 256),
              "cache": True}
    section_s = {k: s[k] for k in _SECTION_KEYS if k in s}
    section_s.update(block_len=int(s["block_len"]), format=format, **taus)
    if format == "merged":
        config = json.loads((final / "config.json").read_text())
        config.pop("accel", None)
        if isinstance(config.get("accel_dllm"), dict):
            config["accel_dllm"] = {**config["accel_dllm"], "attention": "block-causal",
                                    "block_len": int(s["block_len"])}
        tensors = {}
        for f in sorted(final.glob("*.safetensors")):
            tensors.update(load_file(str(f)))
        extra = {f.name: f.read_bytes() for f in final.iterdir() if f.is_file() and f.name not in _SKIP
                 and not f.name.endswith(".safetensors")}
        section = {"recipe": "d2f", "backbone": ".", "decode": decode, "d2f": section_s}
        return save_checkpoint(out_dir, section, tensors=tensors, extra_files=extra, backbone_config=config)
    adir = final / "adapter"
    if not (adir / "adapter_model.safetensors").exists():
        raise CheckpointError(f"{run}/final has no LoRA adapters (final/adapter); re-run `accel distill d2f "
                              f"--output {run}` or use --format merged")
    if str(s["teacher"]).startswith("random:"):
        raise CheckpointError(f"{run} distilled a random-init model ({s['teacher']}), which an adapter export cannot "
                              "reference; use --format merged")
    section = {"recipe": "d2f", "backbone": s["teacher"], "decode": decode, "d2f": section_s}
    return save_checkpoint(out_dir, section, tensors=load_file(str(adir / "adapter_model.safetensors")),
                           extra_files={"adapter_config.json": (adir / "adapter_config.json").read_bytes()},
                           weights_name="adapter_model.safetensors")
