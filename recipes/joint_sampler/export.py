"""`accel export RUN --out DIR` for the joint sampler: layer weights + its `Spec` + backbone reference.

The checkpoint holds only the sampler layer (one transformer layer); the frozen backbone is
referenced (``builtin:dllm`` or an absolute directory), not copied.
"""
from __future__ import annotations

from pathlib import Path

from accel.decoding.checkpoint import check_options, override_spec
from accel.recipes.joint_sampler.spec import Spec
from accel.recipes.joint_sampler.train import METRICS_FILE, SAMPLER_FILE, SETTINGS_FILE
from accel.recipes.shared.run_export import accel_only, read_run, read_run_spec, save_referencing


def export(run_dir, out_dir, format: str | None = None, **overrides) -> Path:
    """Writes the inference checkpoint; k / temperature / gen_len (the spec's settable fields) override the
    run's decode defaults."""
    check_options(Spec, overrides, "joint-sampler")
    accel_only(format, "joint-sampler")
    run, s = read_run(run_dir, SAMPLER_FILE, SETTINGS_FILE, "joint-sampler", "trained sampler")
    spec = override_spec(read_run_spec(run, Spec, s, renamed={"k": "k_default"}), overrides, "joint-sampler")
    return save_referencing(out_dir, "joint-sampler", run, s, spec, SAMPLER_FILE, METRICS_FILE)
