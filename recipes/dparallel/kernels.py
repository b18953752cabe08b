"""Fused entropy-threshold transfer decision (dParallel's decode rule) for one block.

Given the block's logits [R, N, V] and which positions are still masked [R, N], decide in one
pass over the logits which positions to unmask: every masked position whose entropy (nats) is
below the threshold, plus always the masked position of lowest entropy (so each forward makes
progress). Eager torch materialises softmax over [R, N, V] and reduces it several times; the
Triton kernel runs one program per row, streams the vocabulary in chunks for all N positions
at once with an online softmax (running max m, S = Σ exp(x - m), T = Σ exp(x - m)(x - m),
entropy = log S - T / S), then takes the threshold and the row's arg-min in registers.

Outputs (kernel and reference agree): x0 [R, N] long (argmax, lowest index on ties), entropy
[R, N] float32 (+inf where the position is not masked), transfer [R, N] bool. Statistics are
float32 whatever the logits dtype; ties for the lowest entropy go to the lowest position.
"""
from __future__ import annotations


import torch

from accel.core.triton_gate import require_triton, tl, triton, use_triton  # noqa: F401 (tl: the kernels' language)


def entropy_transfer_ref(logits: torch.Tensor, masked: torch.Tensor, threshold: float):
    """Pure-torch reference: (x0, entropy, transfer) for logits [R, N, V], masked [R, N]."""
    x = logits.float()
    x0 = x.argmax(-1)
    logp = torch.log_softmax(x, -1)
    ent = -(logp.exp() * logp).sum(-1)
    ent = torch.where(masked, ent, torch.full_like(ent, float("inf")))
    transfer = masked & (ent < threshold)
    lowest = torch.zeros_like(masked).scatter_(1, ent.argmin(1, keepdim=True), True)
    transfer |= lowest & masked
    return x0, ent, transfer


if triton is not None:
    @triton.jit
    def _entropy_transfer_kernel(x_ptr, m_ptr, ids_ptr, ent_ptr, tr_ptr, N, V, stride_r, stride_n, threshold,
                                 BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr):
        r = tl.program_id(0).to(tl.int64)
        rows = tl.arange(0, BLOCK_N)
        cols = tl.arange(0, BLOCK_V)
        rin = rows < N
        NEG: tl.constexpr = float("-inf")
        m = tl.full((BLOCK_N,), NEG, tl.float32)
        S = tl.zeros((BLOCK_N,), tl.float32)
        T = tl.zeros((BLOCK_N,), tl.float32)
        best = tl.zeros((BLOCK_N,), tl.int64)
        base = x_ptr + r * stride_r
        for start in range(0, V, BLOCK_V):
            idx = start + cols
            ok = rin[:, None] & (idx[None, :] < V)
            x = tl.load(base + rows[:, None] * stride_n + idx[None, :], mask=ok, other=NEG).to(tl.float32)
            cmax = tl.max(x, axis=1)
            cidx = tl.min(tl.where((x == cmax[:, None]) & ok, idx[None, :], V), axis=1).to(tl.int64)
            best = tl.where(cmax > m, cidx, best)
            m_new = tl.maximum(m, cmax)
            live = m_new > NEG
            both = live & (m > NEG)
            d = tl.where(both, m, 0.0) - tl.where(both, m_new, 0.0)
            alpha = tl.exp(d)
            T = alpha * (T + d * S)
            S = alpha * S
            z = tl.where(x > NEG, x - tl.where(live, m_new, 0.0)[:, None], 0.0)
            e = tl.where(x > NEG, tl.exp(z), 0.0)
            S += tl.sum(e, axis=1)
            T += tl.sum(e * z, axis=1)
            m = m_new
        S_safe = tl.where(m > NEG, S, 1.0)
        ent = tl.where(m > NEG, tl.log(S_safe) - T / S_safe, float("inf"))
        msk = tl.load(m_ptr + r * N + rows, mask=rin, other=0) != 0
        ent = tl.where(msk & rin, ent, float("inf"))
        low = tl.min(ent, axis=0)
        first = tl.min(tl.where((ent == low) & msk & rin, rows, BLOCK_N), axis=0)
        tr = msk & rin & ((ent < threshold) | (rows == first))
        tl.store(ids_ptr + r * N + rows, best, mask=rin)
        tl.store(ent_ptr + r * N + rows, ent, mask=rin)
        tl.store(tr_ptr + r * N + rows, tr.to(tl.int8), mask=rin)



def entropy_transfer_triton(logits: torch.Tensor, masked: torch.Tensor, threshold: float, block_v: int | None = None):
    """The Triton path (CUDA, or CPU under TRITON_INTERPRET=1); logits fp32/bf16/fp16."""
    require_triton("entropy_transfer_ref")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"entropy_transfer: unsupported dtype {logits.dtype}; use float32, bfloat16 or float16")
    R, N, V = logits.shape
    x = logits if logits.stride(-1) == 1 else logits.contiguous()
    msk = masked.to(torch.int8).contiguous()
    ids = torch.empty((R, N), dtype=torch.long, device=x.device)
    ent = torch.empty((R, N), dtype=torch.float32, device=x.device)
    tr = torch.empty((R, N), dtype=torch.int8, device=x.device)
    if R and N:
        bn = triton.next_power_of_2(N)
        if block_v is None:
            block_v = max(16, min(triton.next_power_of_2(V), 8192 // bn))
        _entropy_transfer_kernel[(R,)](x, msk, ids, ent, tr, N, V, x.stride(0), x.stride(1), float(threshold),
                                       BLOCK_N=bn, BLOCK_V=block_v, num_warps=4)
    return ids, ent, tr.bool()


def entropy_transfer(logits: torch.Tensor, masked: torch.Tensor, threshold: float, force: bool = False):
    """(x0, entropy, transfer) of the entropy-threshold rule: Triton on CUDA, the reference otherwise.

    force=True runs the Triton path on CPU when TRITON_INTERPRET=1 (how tests check the kernel).
    """
    if use_triton(logits, force):
        return entropy_transfer_triton(logits, masked, threshold)
    return entropy_transfer_ref(logits, masked, threshold)


def fused_entropy_policy(threshold: float = 0.5):
    """A `generate_blockwise` policy taking its decision from the fused kernel (same rule as
    `accel.decoding.dllm.entropy_policy`, which reads the loop's precomputed entropies)."""
    from accel.decoding.dllm import BlockDecision

    def policy(st):
        _, _, transfer = entropy_transfer(st.logits, st.masked, threshold)
        return BlockDecision(transfer)
    return policy
