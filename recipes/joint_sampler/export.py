"""`accel export RUN --out DIR` for the joint sampler: layer weights + its `Spec` + backbone reference.

The checkpoint holds only the sampler layer (one transformer layer); the frozen backbone is
referenced (``builtin:dllm`` or an absolute directory), not copied.
"""
from __future__ import annotations

import json
from pathlib import Path

from accel.decoding.checkpoint import CheckpointError, check_options, override_spec, save_checkpoint
from accel.recipes.joint_sampler.spec import Spec
from accel.recipes.joint_sampler.train import METRICS_FILE, SAMPLER_FILE, SETTINGS_FILE


def export(run_dir, out_dir, format: str | None = None, **overrides) -> Path:
    """Writes the inference checkpoint; k / temperature / gen_len (the spec's settable fields) override the
    run's decode defaults."""
    check_options(Spec, overrides, "joint-sampler")
    from safetensors.torch import load_file

    if format not in (None, "accel"):
        raise CheckpointError(f"--format {format}: joint-sampler exports only the accel format")
    run = Path(run_dir).expanduser()
    if not (run / SETTINGS_FILE).exists() or not (run / SAMPLER_FILE).exists():
        raise CheckpointError(f"{run} has no trained sampler ({SAMPLER_FILE}); finish the run with "
                              f"`accel train joint-sampler --output {run}` (it resumes)")
    s = json.loads((run / SETTINGS_FILE).read_text())
    spec = Spec(layer=s["layer"], token_input=s["token_input"], k=int(s["k_default"]),
                temperature=float(s["temperature"]), block_len=s["block_len"], max_k=s["max_k"], top_m=s["top_m"],
                data=s.get("data"), gen_len=int(s.get("gen_len") or 64))
    spec = override_spec(spec, overrides, "joint-sampler")
    extra = {METRICS_FILE: (run / METRICS_FILE).read_text()} if (run / METRICS_FILE).exists() else {}
    return save_checkpoint(out_dir, {"recipe": "joint-sampler", "backbone": s["backbone"]}, spec=spec,
                           tensors=load_file(str(run / SAMPLER_FILE)), extra_files=extra)
