"""`accel export RUN --out DIR` for Learn2PD: filter weights + its `Spec` + backbone reference.

The checkpoint is tiny (the ~2K-parameter filter); the backbone is referenced, not copied.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from accel.decoding.checkpoint import check_options, override_spec
from accel.recipes.learn2pd.spec import Spec
from accel.recipes.learn2pd.train import FILTER_FILE, METRICS_FILE, SETTINGS_FILE
from accel.recipes.shared.run_export import accel_only, read_run, save_referencing


def export(run_dir, out_dir, format: str | None = None, **overrides) -> Path:
    """Writes the inference checkpoint; tau / eotp / gen_len (the spec's settable fields) override the
    run's decode defaults."""
    check_options(Spec, overrides, "learn2pd")
    accel_only(format, "learn2pd")
    run, s = read_run(run_dir, FILTER_FILE, SETTINGS_FILE, "learn2pd", "trained filter")
    spec = Spec(block_len=s["block_len"], hidden_size=s["hidden_size"], gen_len=int(s.get("gen_len") or 256),
                tau=s["tau"], eotp=s["eotp"],
                oracle={k: s["oracle"].get(k) for k in ("teacher", "gen_len", "block_len", "prompt_source", "n_prompts")})
    spec = override_spec(spec, overrides, "learn2pd")
    spec = dataclasses.replace(spec, method="learn2pd+eotp" if spec.eotp else "learn2pd")
    return save_referencing(out_dir, "learn2pd", run, s, spec, FILTER_FILE, METRICS_FILE)
