"""`accel export RUN --out DIR` for Learn2PD: filter weights + its `Spec` + backbone reference.

The checkpoint is tiny (the ~2K-parameter filter); the backbone is referenced, not copied.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from accel.decoding.checkpoint import CheckpointError, check_options, override_spec, save_checkpoint
from accel.recipes.learn2pd.spec import Spec
from accel.recipes.learn2pd.train import FILTER_FILE, METRICS_FILE, SETTINGS_FILE


def export(run_dir, out_dir, format: str | None = None, **overrides) -> Path:
    """Writes the inference checkpoint; tau / eotp / gen_len (the spec's settable fields) override the
    run's decode defaults."""
    check_options(Spec, overrides, "learn2pd")
    from safetensors.torch import load_file

    if format not in (None, "accel"):
        raise CheckpointError(f"--format {format}: learn2pd exports only the accel format")
    run = Path(run_dir).expanduser()
    if not (run / SETTINGS_FILE).exists() or not (run / FILTER_FILE).exists():
        raise CheckpointError(f"{run} has no trained filter ({FILTER_FILE}); finish the run with "
                              f"`accel train learn2pd --output {run}` (it resumes)")
    s = json.loads((run / SETTINGS_FILE).read_text())
    spec = Spec(block_len=s["block_len"], hidden_size=s["hidden_size"], gen_len=int(s.get("gen_len") or 256),
                tau=s["tau"], eotp=s["eotp"],
                oracle={k: s["oracle"].get(k) for k in ("teacher", "gen_len", "block_len", "prompt_source", "n_prompts")})
    spec = override_spec(spec, overrides, "learn2pd")
    spec = dataclasses.replace(spec, method="learn2pd+eotp" if spec.eotp else "learn2pd")
    extra = {METRICS_FILE: (run / METRICS_FILE).read_text()} if (run / METRICS_FILE).exists() else {}
    return save_checkpoint(out_dir, {"recipe": "learn2pd", "backbone": s["backbone"]}, spec=spec,
                           tensors=load_file(str(run / FILTER_FILE)), extra_files=extra)
