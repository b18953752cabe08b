"""Fused top-k over the draft vocabulary with the d2t mapping: the EAGLE-3 draft step's selection.

Every tree level asks, for each expanded node, its k best draft tokens as *target* ids. In eager
torch that is a topk over [R, Vd] plus a gather of d2t and an add (three launches, an index
tensor round trip). The Triton kernel does it in one launch, one program per row: k passes over
the row, each finding the best entry strictly after the previous pick in the order (value
descending, index ascending), and writes ``idx + d2t[idx]`` and the value.

Conventions (the torch reference is the oracle and the CPU path):
- ``logits [R, Vd]`` float32/bfloat16/float16, compared in float32; ``d2t [Vd]`` long offsets
  (target id = draft id + d2t[draft id]) or None for a full-vocabulary draft;
- order: value descending, ties to the lower index (a stable descending sort);
- returns ``(target_ids [R, k] long, values [R, k] float32)``; k <= Vd;
- NaN logits are not supported.
"""
from __future__ import annotations

import torch

from accel.core.triton_gate import require_triton, tl, triton, use_triton  # noqa: F401 (tl: the kernel's language)


def draft_topk_ref(logits: torch.Tensor, k: int, d2t: torch.Tensor | None = None):
    """Pure-torch reference: (target ids [R,k], values [R,k] float32)."""
    x = logits.float()
    vals, idx = torch.sort(x, dim=-1, descending=True, stable=True)
    vals, idx = vals[..., :k], idx[..., :k]
    if d2t is not None:
        idx = idx + d2t[idx]
    return idx, vals


if triton is not None:
    @triton.jit
    def _draft_topk_kernel(x_ptr, d2t_ptr, ids_ptr, val_ptr, V, stride_row,
                           K: tl.constexpr, HAS_D2T: tl.constexpr, BLOCK_V: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        base = x_ptr + row * stride_row
        offs = tl.arange(0, BLOCK_V)
        NEG_INF: tl.constexpr = float("-inf")
        prev_v = tl.full((), float("inf"), tl.float32)
        prev_i = tl.full((), -1, tl.int64)
        for j in tl.static_range(K):
            best_v = tl.full((), NEG_INF, tl.float32)
            best_i = tl.zeros((), tl.int64) + V
            for start in range(0, V, BLOCK_V):
                idx = (start + offs).to(tl.int64)
                inb = idx < V
                x = tl.load(base + idx, mask=inb, other=NEG_INF).to(tl.float32)
                # strictly after the previous pick in (value desc, index asc) order
                ok = inb & ((x < prev_v) | ((x == prev_v) & (idx > prev_i)))
                xm = tl.where(ok, x, NEG_INF)
                cmax = tl.max(xm, axis=0)
                cidx = tl.min(tl.where(ok & (xm == cmax), idx, V), axis=0)
                take = (cidx < V) & ((cmax > best_v) | ((cmax == best_v) & (cidx < best_i)))
                best_v = tl.where(take, cmax, best_v)
                best_i = tl.where(take, cidx, best_i)
            out = best_i
            if HAS_D2T:
                out = best_i + tl.load(d2t_ptr + best_i)
            tl.store(ids_ptr + row * K + j, out)
            tl.store(val_ptr + row * K + j, best_v)
            prev_v, prev_i = best_v, best_i


def draft_topk_triton(logits: torch.Tensor, k: int, d2t: torch.Tensor | None = None, block_v: int | None = None):
    """The Triton path; logits [R, Vd]."""
    require_triton("draft_topk_ref")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"draft_topk: unsupported dtype {logits.dtype}; use float32, bfloat16 or float16")
    R, V = logits.shape
    if not 1 <= k <= V:
        raise ValueError(f"draft_topk: k={k} must be in 1..{V}")
    x = logits if logits.stride(-1) == 1 else logits.contiguous()
    ids = torch.empty(R, k, dtype=torch.long, device=x.device)
    vals = torch.empty(R, k, dtype=torch.float32, device=x.device)
    if R:
        block_v = block_v or min(4096, triton.next_power_of_2(V))
        d = d2t if d2t is not None else ids  # unused pointer when HAS_D2T is False
        _draft_topk_kernel[(R,)](x, d, ids, vals, V, x.stride(0), K=k, HAS_D2T=d2t is not None, BLOCK_V=block_v,
                                 num_warps=8 if block_v >= 2048 else 4)
    return ids, vals


def draft_topk(logits: torch.Tensor, k: int, d2t: torch.Tensor | None = None, force: bool = False):
    """k best draft tokens per row as target ids (and their logits), rows of logits [..., Vd].

    Triton on CUDA tensors when triton is installed, the torch reference otherwise; force=True runs
    the Triton path on CPU too under TRITON_INTERPRET=1 (how tests check the kernel) — the same
    gate as every kernel (`accel.core.triton_gate`).
    """
    lead = logits.shape[:-1]
    x = logits.reshape(-1, logits.shape[-1])
    if use_triton(x, force):
        ids, vals = draft_topk_triton(x, k, d2t)
    else:
        ids, vals = draft_topk_ref(x, k, d2t)
    return ids.reshape(*lead, k), vals.reshape(*lead, k)
