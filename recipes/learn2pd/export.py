"""`accel export RUN --out DIR` for Learn2PD: filter weights + its `Spec` + backbone reference.

The checkpoint is tiny (the ~2K-parameter filter); the backbone is referenced, not copied.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from accel.decoding.checkpoint import check_options, override_spec
from accel.recipes.learn2pd.spec import Spec
from accel.recipes.learn2pd.train import FILTER_FILE, METRICS_FILE, SETTINGS_FILE
from accel.recipes.shared.run_export import accel_only, read_run, read_run_spec, save_referencing


def export(run_dir, out_dir, format: str | None = None, **overrides) -> Path:
    """Writes the inference checkpoint: the `Spec` training recorded, with tau / eotp / gen_len (its
    settable fields) overridden."""
    check_options(Spec, overrides, "learn2pd")
    accel_only(format, "learn2pd")
    run, s = read_run(run_dir, FILTER_FILE, SETTINGS_FILE, "learn2pd", "trained filter")
    spec = override_spec(read_run_spec(run, Spec, s), overrides, "learn2pd")
    spec = dataclasses.replace(spec, method="learn2pd+eotp" if spec.eotp else "learn2pd")
    return save_referencing(out_dir, "learn2pd", run, s, spec, FILTER_FILE, METRICS_FILE)
