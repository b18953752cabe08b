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

from accel.decoding.checkpoint import check_options, override_spec
import dataclasses

from accel.recipes.dparallel.spec import Spec
from accel.recipes.dparallel.train import SETTINGS_FILE
from accel.recipes.shared.run_export import load_distilled_run, read_run_spec, save_distilled


def export(run_dir, out_dir, format: str = "merged", **overrides) -> Path:
    """Writes the inference checkpoint: the `Spec` training recorded, in `format`, with threshold / gen_len
    (its settable fields) overridden."""
    check_options(Spec, overrides, "dparallel")
    final, s = load_distilled_run(run_dir, "dparallel", SETTINGS_FILE, format)
    spec = dataclasses.replace(read_run_spec(final.parent, Spec, s, renamed={"gen_len": "train_gen_len"}), format=format)
    spec = override_spec(spec, overrides, "dparallel")
    provenance = {k: s[k] for k in ("family", "lora_r", "lora_alpha", "entropy_weight", "entropy_temperature",
                                    "mask_prob", "train_gen_len", "steps", "trajectories")}
    return save_distilled(final, out_dir, format, "dparallel", s["teacher"], {}, provenance,
                          " was trained without LoRA (lora_r=0), so there are no adapters to export; "
                          "use --format merged", spec=spec)
