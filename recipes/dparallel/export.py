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

import json
from pathlib import Path

from accel.decoding.checkpoint import CheckpointError, save_checkpoint
from accel.recipes.dparallel.train import SETTINGS_FILE

FORMATS = ("merged", "adapter")
_SKIP = {"config.json", "model.safetensors", "model.safetensors.index.json", "adapter", "training_args.bin"}


def export(run_dir, out_dir, format: str = "merged", threshold: float | None = None, gen_len: int | None = None,
           **options) -> Path:
    """Writes the inference checkpoint; threshold / gen_len override the run's decode defaults."""
    from safetensors.torch import load_file

    if options:
        raise CheckpointError(f"dparallel export has no option {next(iter(options))!r}; "
                              "its options are: format, threshold, gen_len")
    if format not in FORMATS:
        raise CheckpointError(f"--format {format}: dparallel exports 'merged' (LoRA folded in, a full HF model) "
                              "or 'adapter' (LoRA adapters only)")
    run = Path(run_dir).expanduser()
    final = run / "final"
    if not (run / SETTINGS_FILE).exists() or not (final / "config.json").exists():
        raise CheckpointError(f"{run} has no finished model (final/ and {SETTINGS_FILE}); finish the run with "
                              f"`accel distill dparallel --output {run}` (it resumes)")
    s = json.loads((run / SETTINGS_FILE).read_text())
    thr = float(s["threshold"] if threshold is None else threshold)
    if thr <= 0:
        raise CheckpointError(f"threshold={thr}: must be > 0 (entropy in nats; paper: 0.45-0.5)")
    decode = {"method": "dparallel", "rule": "entropy", "threshold": thr, "block_len": s["block_len"],
              "gen_len": int(gen_len or 256)}
    section_s = {k: s[k] for k in ("teacher", "family", "seed", "lora_r", "lora_alpha", "entropy_weight",
                                   "entropy_temperature", "mask_prob", "train_gen_len", "steps", "trajectories")}
    section_s.update(threshold=thr, block_len=s["block_len"], format=format)
    if format == "merged":
        config = json.loads((final / "config.json").read_text())
        config.pop("accel", None)
        tensors = {}
        for f in sorted(final.glob("*.safetensors")):
            tensors.update(load_file(str(f)))
        extra = {f.name: f.read_bytes() for f in final.iterdir() if f.is_file() and f.name not in _SKIP
                 and not f.name.endswith(".safetensors")}
        section = {"recipe": "dparallel", "backbone": ".", "decode": decode, "dparallel": section_s}
        return save_checkpoint(out_dir, section, tensors=tensors, extra_files=extra, backbone_config=config)
    adir = final / "adapter"
    if not (adir / "adapter_model.safetensors").exists():
        raise CheckpointError(f"{run} was trained without LoRA (lora_r=0), so there are no adapters to export; "
                              "use --format merged")
    if str(s["teacher"]).startswith("random:"):
        raise CheckpointError(f"{run} distilled a random-init model ({s['teacher']}), which an adapter export cannot "
                              "reference; use --format merged")
    section = {"recipe": "dparallel", "backbone": s["teacher"], "decode": decode, "dparallel": section_s}
    return save_checkpoint(out_dir, section, tensors=load_file(str(adir / "adapter_model.safetensors")),
                           extra_files={"adapter_config.json": (adir / "adapter_config.json").read_bytes()},
                           weights_name="adapter_model.safetensors")
