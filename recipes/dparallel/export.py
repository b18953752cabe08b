"""`accel export RUN --out DIR` for dParallel: the distilled model as an inference checkpoint.

format="merged" (default): the LoRA folded into the base (RUN/final), written as a full HF
directory — config.json (the backbone's, plus the "accel" section), model.safetensors,
tokenizer files — so `AutoModelForCausalLM.from_pretrained(DIR)` and `load_backbone(DIR)` load
it directly and `accel bench DIR` decodes it (backbone "."). format="adapter": only the LoRA
adapters (peft layout: adapter_config.json + adapter_model.safetensors) with the teacher as
backbone; the bench applies them at load time. Both record the decode rule (entropy
threshold), the threshold, block_len and the undistilled teacher the baselines run on.
"""
from __future__ import annotations

from pathlib import Path

from accel.decoding.checkpoint import CheckpointError
from accel.decoding.distilled import FORMATS, load_distilled_run, save_distilled  # noqa: F401 (FORMATS: the choices)
from accel.recipes.dparallel.train import SETTINGS_FILE


def export(run_dir, out_dir, format: str = "merged", threshold: float | None = None, gen_len: int | None = None,
           **options) -> Path:
    """Writes the inference checkpoint; threshold / gen_len override the run's decode defaults."""
    if options:
        raise CheckpointError(f"dparallel export has no option {next(iter(options))!r}; "
                              "its options are: format, threshold, gen_len")
    final, s = load_distilled_run(run_dir, "dparallel", SETTINGS_FILE, format)
    thr = float(s["threshold"] if threshold is None else threshold)
    if thr <= 0:
        raise CheckpointError(f"threshold={thr}: must be > 0 (entropy in nats; paper: 0.45-0.5)")
    decode = {"method": "dparallel", "rule": "entropy", "threshold": thr, "block_len": s["block_len"],
              "gen_len": int(gen_len or s.get("train_gen_len") or 256)}
    section_s = {k: s[k] for k in ("teacher", "family", "seed", "lora_r", "lora_alpha", "entropy_weight",
                                   "entropy_temperature", "mask_prob", "train_gen_len", "steps", "trajectories")}
    section_s.update(threshold=thr, block_len=s["block_len"], format=format)
    return save_distilled(final, out_dir, format, "dparallel", s["teacher"], decode, section_s,
                          " was trained without LoRA (lora_r=0), so there are no adapters to export; "
                          "use --format merged")
