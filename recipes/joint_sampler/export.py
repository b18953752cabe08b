"""`accel export RUN --out DIR` for the joint sampler: layer weights + K default + backbone reference.

The checkpoint holds only the sampler layer (one transformer layer); the frozen backbone is
referenced (``builtin:dllm`` or an absolute directory), not copied.
"""
from __future__ import annotations

import json
from pathlib import Path

from accel.decoding.checkpoint import CheckpointError, save_checkpoint
from accel.recipes.joint_sampler.train import METRICS_FILE, SAMPLER_FILE, SETTINGS_FILE


def export(run_dir, out_dir, k: int | None = None, temperature: float | None = None, gen_len: int | None = None,
           format: str | None = None, **options) -> Path:
    """Writes the inference checkpoint; k / temperature / gen_len override the run's decode defaults."""
    from safetensors.torch import load_file

    if format not in (None, "accel"):
        raise CheckpointError(f"--format {format}: joint-sampler exports only the accel format")
    if options:
        raise CheckpointError(f"joint-sampler export has no option {next(iter(options))!r}; "
                              "its options are: k, temperature, gen_len")
    run = Path(run_dir).expanduser()
    if not (run / SETTINGS_FILE).exists() or not (run / SAMPLER_FILE).exists():
        raise CheckpointError(f"{run} has no trained sampler ({SAMPLER_FILE}); finish the run with "
                              f"`accel train joint-sampler --output {run}` (it resumes)")
    s = json.loads((run / SETTINGS_FILE).read_text())
    k = int(s["k_default"] if k is None else k)
    if not 1 <= k <= 8:
        raise CheckpointError(f"k={k}: tokens per full forward must be in 1..8")
    temperature = float(s["temperature"] if temperature is None else temperature)
    if temperature < 0:
        raise CheckpointError(f"temperature={temperature}: must be >= 0")
    section = {
        "recipe": "joint-sampler", "backbone": s["backbone"],
        "decode": {"method": "joint-sampler", "k": k, "temperature": temperature, "block_len": s["block_len"],
                   "gen_len": int(gen_len or s.get("gen_len") or 64)},
        "joint_sampler": {"layer": s["layer"], "token_input": s["token_input"], "block_len": s["block_len"],
                          "max_k": s["max_k"], "k": k, "temperature": temperature, "top_m": s["top_m"],
                          "data": s.get("data")},
    }
    extra = {METRICS_FILE: (run / METRICS_FILE).read_text()} if (run / METRICS_FILE).exists() else {}
    return save_checkpoint(out_dir, section, tensors=load_file(str(run / SAMPLER_FILE)), extra_files=extra)
