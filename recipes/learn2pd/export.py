"""`accel export RUN --out DIR` for Learn2PD: filter weights + decode settings + backbone reference.

The checkpoint is tiny (the ~2K-parameter filter); the backbone is referenced, not copied.
"""
from __future__ import annotations

import json
from pathlib import Path

from accel.decoding.checkpoint import CheckpointError, save_checkpoint
from accel.recipes.learn2pd.train import FILTER_FILE, METRICS_FILE, SETTINGS_FILE


def export(run_dir, out_dir, tau: float | None = None, eotp: bool | None = None, gen_len: int | None = None,
           format: str | None = None, **options) -> Path:
    """Writes the inference checkpoint; tau / eotp / gen_len override the run's decode defaults."""
    from safetensors.torch import load_file

    if format not in (None, "accel"):
        raise CheckpointError(f"--format {format}: learn2pd exports only the accel format")
    if options:
        raise CheckpointError(f"learn2pd export has no option {next(iter(options))!r}; its options are: tau, eotp, gen_len")
    run = Path(run_dir).expanduser()
    if not (run / SETTINGS_FILE).exists() or not (run / FILTER_FILE).exists():
        raise CheckpointError(f"{run} has no trained filter ({FILTER_FILE}); finish the run with "
                              f"`accel train learn2pd --output {run}` (it resumes)")
    s = json.loads((run / SETTINGS_FILE).read_text())
    tau = s["tau"] if tau is None else float(tau)
    if not 0.0 < tau < 1.0:
        raise CheckpointError(f"tau={tau} must be in (0, 1)")
    eotp = s["eotp"] if eotp is None else bool(eotp)
    section = {
        "recipe": "learn2pd", "backbone": s["backbone"],
        "decode": {"method": "learn2pd+eotp" if eotp else "learn2pd", "block_len": s["block_len"],
                   "gen_len": int(gen_len or s.get("gen_len") or 256), "tau": tau, "eotp": eotp},
        "learn2pd": {"block_len": s["block_len"], "hidden_size": s["hidden_size"], "tau": tau, "eotp": eotp,
                     "oracle": {k: s["oracle"].get(k) for k in ("teacher", "gen_len", "block_len", "prompt_source",
                                                                  "n_prompts")}},
    }
    extra = {METRICS_FILE: (run / METRICS_FILE).read_text()} if (run / METRICS_FILE).exists() else {}
    return save_checkpoint(out_dir, section, tensors=load_file(str(run / FILTER_FILE)), extra_files=extra)
