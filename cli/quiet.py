"""Keeping library chatter off the terminal: one progress bar per long step (ours), no per-file bars.

- transformers' "Loading weights" / "Writing model shards" and datasets' per-shard "Saving the
  dataset" bars would each print a line per call (and tear through our rich bars);
- DeepSpeed, imported by transformers/accelerate even when unused, warns "Setting accelerator to
  CPU" on every CUDA-less start because it auto-detects; telling it the accelerator (the
  documented DS_ACCELERATOR variable, inherited by torchrun workers) is the fix at the cause.
"""
from __future__ import annotations

import os
import sys


def quiet_libraries() -> None:
    if "DS_ACCELERATOR" not in os.environ and "deepspeed" not in sys.modules:
        import torch
        if not torch.cuda.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    try:
        import datasets
    except ImportError:  # pragma: no cover - a core dependency
        return
    datasets.disable_progress_bars()
