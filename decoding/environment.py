"""Where a bench ran: device, compute dtype and package versions, recorded in every report (bf16 and
fp32 rows, or two GPUs, are not comparable)."""
from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

import torch


def environment(adapter) -> dict:
    """{"device", "dtype", "versions"} of a run on `adapter`."""
    return {"device": device_name(adapter), "dtype": dtype_name(adapter), "versions": versions()}


def device_name(adapter) -> str:
    dev = str(adapter.device)
    if dev.startswith("cuda"):
        return f"{dev} ({torch.cuda.get_device_name(adapter.device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def dtype_name(adapter) -> str:
    """The backbone's compute dtype, e.g. float32."""
    p = next(adapter.model.parameters(), None)
    return str(p.dtype).replace("torch.", "") if p is not None else "unknown"


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("accel", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
