"""The one place that decides whether a fused Triton kernel runs or its torch reference does.

Every kernel module keeps its torch reference beside the kernel; the kernel runs on CUDA
tensors when triton is installed (extra ``[kernels]``), and on CPU only when a caller forces it
under ``TRITON_INTERPRET=1`` (how the tests check kernels against their references).
"""
from __future__ import annotations

import os

import torch

try:  # optional dependency
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only without triton
    triton = None
    tl = None


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1 (Triton kernels then run on CPU tensors, slowly)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(tensor, force: bool = False) -> bool:
    """Run the Triton path for `tensor`: CUDA with triton installed, or CPU when forced under the interpreter."""
    return triton is not None and (tensor.is_cuda or (force and interpreting()))


def triton_available(device) -> bool:
    """True when the Triton path can run on `device` (CUDA, or CPU under TRITON_INTERPRET=1)."""
    return triton is not None and (torch.device(device).type == "cuda" or interpreting())


def require_triton(reference: str) -> None:
    """Raise when a Triton path is called directly without triton installed."""
    if triton is None:
        raise RuntimeError(f"triton is not installed; install accel[kernels] or use {reference}")
