"""One fused Learn2PD decode step: block logits -> unmask decision, in a single Triton kernel.

Per row of the batch, from logits [B, L, V] of the current block:
  confidence = softmax max-probability (float32), x0 = argmax (ties -> lowest id);
  filter MLP  z = W2 relu(W1 conf + b1) + b2 over the whole block; accept = masked & sigmoid(z) > tau;
  transfer   = accept | {the most confident masked position} (the vanilla schedule's top-1);
  EoTP       : end = first accepted position whose x0 is an end token; else the most confident
               masked position whose x0 is an end token; else -1. The end position is transferred too.
Outputs: transfer [B, L] bool, x0 [B, L] long, conf [B, L] float32, end [B] long (block-relative).

Kernel layout: grid (B, L); program (b, p) streams row p's logits once (online softmax + argmax)
and stores its confidence/argmax; the last program of row b to finish (an acq_rel atomic counter)
reads the row's L results back and runs the ~2K-parameter MLP and the decision. So the vocabulary
pass, which dominates, gets B*L programs, and there is still one launch per step.

`step_ref` (torch) is the CPU path and the test oracle; the Triton path runs on CUDA, and on CPU
under TRITON_INTERPRET=1 when forced (tests). Temperature > 0 (Gumbel) is not fused: the policy
uses the reference then.
"""
from __future__ import annotations


import torch

from accel.core.triton_gate import require_triton, tl, triton, use_triton  # noqa: F401 (tl: the kernels' language)


def decision_ref(conf: torch.Tensor, x0: torch.Tensor, masked: torch.Tensor, w1, b1, w2, b2, tau: float,
                 end_ids, eotp: bool = True, k: int = 1):
    """(transfer [B, L] bool, end [B] long) from the block's confidence/argmax (torch reference).

    k is the baseline's per-step count (the most confident k masked positions always transfer).
    """
    B, L = conf.shape
    conf = conf.float()
    z = torch.relu(conf @ w1.float().T + b1.float()) @ w2.float().T + b2.float()
    accept = masked & (torch.sigmoid(z) > tau)
    cm = torch.where(masked, conf, torch.full_like(conf, -1.0))
    top = torch.zeros_like(masked)
    if k > 0:
        vals, idx = torch.topk(cm, k=min(k, L), dim=1)
        top.scatter_(1, idx, vals >= 0)
    transfer = accept | top
    end = torch.full((B,), -1, dtype=torch.long, device=conf.device)
    if eotp:
        ar = torch.arange(L, device=conf.device)
        is_end = torch.isin(x0, torch.as_tensor(list(end_ids), dtype=x0.dtype, device=x0.device))
        first = torch.where(accept & is_end, ar, torch.full_like(ar, L)).min(1).values
        ce = torch.where(masked & is_end, conf, torch.full_like(conf, -1.0))
        best_v, best_j = ce.max(1)
        end = torch.where(first < L, first, torch.where(best_v >= 0, best_j, torch.full_like(best_j, -1)))
        transfer = transfer | (ar[None, :] == end[:, None])
    return transfer, end


def step_ref(logits: torch.Tensor, masked: torch.Tensor, w1, b1, w2, b2, tau: float, end_ids,
             eotp: bool = True, k: int = 1):
    """(transfer, x0, conf, end): confidence/argmax in float32, then `decision_ref`."""
    conf, x0 = torch.softmax(logits.float(), dim=-1).max(-1)
    transfer, end = decision_ref(conf, x0, masked, w1, b1, w2, b2, tau, end_ids, eotp, k)
    return transfer, x0, conf, end


if triton is not None:
    @triton.jit
    def _l2p_step_kernel(x_ptr, masked_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, end_ids_ptr,
                         conf_ptr, x0_ptr, transfer_ptr, end_ptr, count_ptr,
                         V, stride_b, stride_p, tau,
                         L: tl.constexpr, H: tl.constexpr, NE: tl.constexpr, EOTP: tl.constexpr,
                         BLOCK_V: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_H: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        p = tl.program_id(1).to(tl.int64)
        base = x_ptr + b * stride_b + p * stride_p
        offs_v = tl.arange(0, BLOCK_V)
        NEG: tl.constexpr = -3.0e38  # finite "minus infinity": no inf - inf in the rescaling
        m = tl.full((), NEG, tl.float32)
        S = tl.zeros((), tl.float32)
        best = tl.zeros((), tl.int64)
        for start in range(0, V, BLOCK_V):
            idx = start + offs_v
            inb = idx < V
            x = tl.maximum(tl.load(base + idx, mask=inb, other=NEG).to(tl.float32), NEG)
            cmax = tl.max(x, axis=0)
            cidx = tl.min(tl.where((x == cmax) & inb, idx, V), axis=0).to(tl.int64)
            best = tl.where(cmax > m, cidx, best)
            m_new = tl.maximum(m, cmax)
            S = S * tl.exp(m - m_new) + tl.sum(tl.where(inb, tl.exp(x - m_new), 0.0), axis=0)
            m = m_new
        tl.store(conf_ptr + b * L + p, 1.0 / S)
        tl.store(x0_ptr + b * L + p, best)
        done = tl.atomic_add(count_ptr + b, 1, sem="acq_rel")
        if done == L - 1:  # the last position of row b: run the filter and the decision
            offs = tl.arange(0, BLOCK_L)
            lm = offs < L
            conf = tl.load(conf_ptr + b * L + offs, mask=lm, other=0.0, volatile=True)
            x0 = tl.load(x0_ptr + b * L + offs, mask=lm, other=-1, volatile=True)
            masked = (tl.load(masked_ptr + b * L + offs, mask=lm, other=0) != 0) & lm
            oh = tl.arange(0, BLOCK_H)
            hm = oh < H
            w1 = tl.load(w1_ptr + oh[:, None] * L + offs[None, :], mask=hm[:, None] & lm[None, :], other=0.0)
            h = tl.sum(w1 * conf[None, :], axis=1) + tl.load(b1_ptr + oh, mask=hm, other=0.0)
            h = tl.maximum(h, 0.0)
            w2 = tl.load(w2_ptr + offs[:, None] * H + oh[None, :], mask=lm[:, None] & hm[None, :], other=0.0)
            z = tl.sum(w2 * h[None, :], axis=1) + tl.load(b2_ptr + offs, mask=lm, other=0.0)
            accept = masked & (1.0 / (1.0 + tl.exp(-z)) > tau)
            cm = tl.where(masked, conf, -1.0)
            top = tl.argmax(cm, axis=0, tie_break_left=True).to(tl.int32)
            top = tl.where(tl.max(cm, axis=0) >= 0, top, -1)  # -1: no masked position left
            transfer = accept | (offs == top)
            end = tl.full((), -1, tl.int32)
            if EOTP:
                is_end = offs < 0
                for i in tl.static_range(NE):
                    is_end = is_end | (x0 == tl.load(end_ids_ptr + i))
                first = tl.min(tl.where(accept & is_end, offs, BLOCK_L), axis=0)
                ce = tl.where(masked & is_end, conf, -1.0)
                j2 = tl.argmax(ce, axis=0, tie_break_left=True).to(tl.int32)
                end = tl.where(first < L, first.to(tl.int32), tl.where(tl.max(ce, axis=0) >= 0, j2, -1))
                transfer = transfer | (offs == end)
            tl.store(transfer_ptr + b * L + offs, transfer.to(tl.int8), mask=lm)
            tl.store(end_ptr + b, end.to(tl.int64))



def step_triton(logits: torch.Tensor, masked: torch.Tensor, w1, b1, w2, b2, tau: float, end_ids,
                eotp: bool = True, block_v: int | None = None):
    """The fused Triton path (top-1 schedule); same outputs as `step_ref`."""
    require_triton("step_ref")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"learn2pd step: unsupported logits dtype {logits.dtype}; use float32, bfloat16 or float16")
    B, L, V = logits.shape
    H = w1.shape[0]
    if w1.shape != (H, L) or w2.shape != (L, H):
        raise ValueError(f"filter shapes {tuple(w1.shape)}/{tuple(w2.shape)} do not match block length {L}")
    dev = logits.device
    x = logits if logits.stride(-1) == 1 else logits.contiguous()
    f32 = dict(dtype=torch.float32, device=dev)
    w1, b1, w2, b2 = (t.detach().to(**f32).contiguous() for t in (w1, b1, w2, b2))
    ends = torch.as_tensor(list(end_ids) or [-1], dtype=torch.long, device=dev)
    conf = torch.empty((B, L), **f32)
    x0 = torch.empty((B, L), dtype=torch.long, device=dev)
    transfer = torch.zeros((B, L), dtype=torch.int8, device=dev)
    end = torch.full((B,), -1, dtype=torch.long, device=dev)
    count = torch.zeros(B, dtype=torch.int32, device=dev)
    if B:
        if block_v is None:
            block_v = min(4096, triton.next_power_of_2(V))
        _l2p_step_kernel[(B, L)](
            x, masked.to(torch.int8).contiguous(), w1, b1, w2, b2, ends, conf, x0, transfer, end, count,
            V, x.stride(0), x.stride(1), float(tau), L=L, H=H, NE=len(ends), EOTP=bool(eotp),
            BLOCK_V=block_v, BLOCK_L=triton.next_power_of_2(L), BLOCK_H=triton.next_power_of_2(H),
            num_warps=8 if block_v >= 2048 else 4)
    return transfer.bool(), x0, conf, end


def learn2pd_step(logits, masked, w1, b1, w2, b2, tau, end_ids, eotp=True, k=1, force_triton=False):
    """Triton on CUDA (k == 1) when installed, the torch reference otherwise; force_triton runs the
    kernel on CPU under TRITON_INTERPRET=1 (tests)."""
    if k == 1 and use_triton(logits, force_triton):
        return step_triton(logits, masked, w1, b1, w2, b2, tau, end_ids, eotp)
    return step_ref(logits, masked, w1, b1, w2, b2, tau, end_ids, eotp, k)
