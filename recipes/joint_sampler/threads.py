"""The same sampler at any torch thread count: MKL's strict conditional numerical reproducibility.

What moved the short-world figure between machines and thread settings: the frozen model's
forwards (trajectory data, the bench's span states and true joints) come out bitwise the same at
1 and 2 threads, but the training step's weight gradients are GEMMs whose reduction dimension is
the batch's rows x positions (~10^4). MKL splits that dimension across threads, so the sums are
added in another order; the ~1e-7 relative differences of the first step grow over thousands of
AdamW steps into another sampler, with another TV. MKL's strict CNR mode (``MKL_CBWR=AUTO,STRICT``)
fixes a GEMM's summation order whatever the thread count. MKL reads it once, before its first
call, so `accel train joint-sampler` sets it at the very start of the run (`pin_gemm_order`) and
checks that it took (`gemm_thread_invariant`); the result is recorded in the run's settings.
"""
from __future__ import annotations

import os

import torch  # importing torch makes no MKL call; MKL reads MKL_CBWR at its first one

CBWR = "AUTO,STRICT"


def gemm_thread_invariant() -> bool:
    """Whether a tall-skinny GEMM (a weight gradient's shape) gives the same bits at 1 and 2 threads."""
    n = torch.get_num_threads()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4096, 64, generator=g), torch.randn(4096, 96, generator=g)
    try:
        torch.set_num_threads(1)
        one = a.t() @ b
        torch.set_num_threads(2)
        two = a.t() @ b
    finally:
        torch.set_num_threads(n)
    return torch.equal(one, two)


def request_gemm_order() -> None:
    """Asks MKL for a thread-count-independent summation order (unless MKL_CBWR is already set).
    Call before any torch matmul of the process; `gemm_thread_invariant` says later whether it took."""
    os.environ.setdefault("MKL_CBWR", CBWR)


def pin_gemm_order() -> bool:
    """`request_gemm_order`, then whether GEMMs are now thread-count invariant."""
    request_gemm_order()
    return gemm_thread_invariant()
