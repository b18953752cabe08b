"""Fused candidate evaluation for tree verification (Medusa, Hydra): one kernel per batch row.

After the base forward over a tree, every decoder must: read each node's logits row once
(argmax for greedy; log-sum-exp and entropy for typical acceptance), test every candidate
against its parent's distribution, take the cumulative acceptance along each root-to-leaf path
and pick the path with the longest accepted prefix. In eager torch that is a softmax over
[B, N+1, V], gathers, a cumprod and an argmax — several passes and launches per step. The
Triton kernel does it in one launch, one program per row, in three phases separated by
barriers: (1) per node, an online pass over V: argmax, lse and entropy of logits / T;
(2) per node, the accept bit: greedy ``cand == argmax[parent]``, typical
``p(cand | parent) > min(eps, alpha * exp(-H(parent)))``; (3) per path, leading accepted nodes
(a cumulative sum of rejections), best path = the longest (ties: the first path).

Shared conventions (the torch reference is the oracle and the CPU path):
- ``logits [B, N+1, V]`` (any float dtype; statistics in float32), ``cand [B, N+1]`` (node 0 =
  root, never tested), ``retrieve [P, D+1]`` (-1 padded), ``parent [N+1]``;
- argmax ties go to the lowest index (like torch.argmax);
- returns ``(best_path [B], accept_len [B], node_argmax [B, N+1])``: accept_len counts accepted
  candidates after the root (0..D); node_argmax[b, n] is the base's greedy token after node n.
"""
from __future__ import annotations

import torch

from accel.core.triton_gate import require_triton, tl, triton, use_triton  # noqa: F401 (tl: the kernels' language)

if triton is not None:
    from accel.decoding.kernels import online_row_stats


def node_accept_ref(logits, cand, parent, mode: str, temperature: float = 1.0, eps: float = 0.09,
                    alpha: float = 0.3):
    """(accept [B, N+1] bool (root False), node_argmax [B, N+1]) in torch."""
    x = logits.float()
    node_argmax = x.argmax(-1)
    par_argmax = node_argmax[:, parent]  # [B, N+1]
    if mode == "greedy":
        acc = cand == par_argmax
    elif mode == "typical":
        logp = torch.log_softmax(x / temperature, -1)
        p = logp.exp()
        ent = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1)  # [B, N+1]
        thr = torch.clamp(alpha * torch.exp(-ent), max=eps)
        p_cand = logp[:, parent].gather(-1, cand[..., None]).squeeze(-1).exp()  # parent's dist at cand
        acc = p_cand > thr[:, parent]
    else:
        raise ValueError(f"mode={mode!r}: choose greedy or typical")
    acc[:, 0] = False
    return acc, node_argmax


def evaluate_candidates_ref(logits, cand, retrieve, parent, mode: str = "greedy", temperature: float = 1.0,
                            eps: float = 0.09, alpha: float = 0.3):
    """Pure-torch reference of the fused kernel (see module doc)."""
    acc, node_argmax = node_accept_ref(logits, cand, parent, mode, temperature, eps, alpha)
    B = logits.shape[0]
    r = retrieve.clamp(min=0)
    ok = acc[:, r[:, 1:]] & (retrieve[None, :, 1:] >= 0)  # [B, P, D]
    lead = torch.cumprod(ok.long(), -1).sum(-1)  # [B, P]
    # first path attaining the max
    best = lead.argmax(-1)
    return best, lead[torch.arange(B, device=logits.device), best], node_argmax


if triton is not None:
    @triton.jit
    def _eval_kernel(x_ptr, cand_ptr, ret_ptr, par_ptr, amax_ptr, lse_ptr, thr_ptr, acc_ptr, best_ptr, len_ptr,
                     N1, V, P, D1, stride_b, stride_n, inv_t, eps, alpha,
                     TYPICAL: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr):
        b = tl.program_id(0).to(tl.int64)
        NEG_INF: tl.constexpr = float("-inf")
        # phase 1: per node, online argmax / lse / entropy over the vocabulary
        for n in range(0, N1):
            m, best, S, T = online_row_stats(x_ptr + b * stride_b + n * stride_n, V, inv_t, BLOCK_V)
            tl.store(amax_ptr + b * N1 + n, best)
            tl.store(lse_ptr + b * N1 + n, m + tl.log(S))
            ent = tl.log(S) - T / S
            tl.store(thr_ptr + b * N1 + n, tl.minimum(eps, alpha * tl.exp(-ent)))
        tl.debug_barrier()
        # phase 2: accept bit per node against its parent's distribution
        nodes = tl.arange(0, BLOCK_N)
        nin = nodes < N1
        par = tl.load(par_ptr + nodes, mask=nin, other=0)
        c = tl.load(cand_ptr + b * N1 + nodes, mask=nin, other=0)
        if TYPICAL:
            xc = tl.load(x_ptr + b * stride_b + par * stride_n + c, mask=nin, other=NEG_INF).to(tl.float32) * inv_t
            lse = tl.load(lse_ptr + b * N1 + par, mask=nin, other=0.0)
            thr = tl.load(thr_ptr + b * N1 + par, mask=nin, other=1.0)
            ok = tl.exp(xc - lse) > thr
        else:
            pa = tl.load(amax_ptr + b * N1 + par, mask=nin, other=-1)
            ok = c == pa
        ok = ok & nin & (nodes > 0)
        tl.store(acc_ptr + b * N1 + nodes, ok.to(tl.int32), mask=nin)
        tl.debug_barrier()
        # phase 3: leading accepted nodes per path, best path
        pr = tl.arange(0, BLOCK_P)[:, None]
        dc = tl.arange(0, BLOCK_D)[None, :]
        inr = (pr < P) & (dc >= 1) & (dc < D1)
        node = tl.load(ret_ptr + pr * D1 + dc, mask=inr, other=-1)
        a = tl.load(acc_ptr + b * N1 + node, mask=inr & (node >= 0), other=0)
        fails = tl.where(inr, 1 - a, 0)
        fails = tl.where((dc >= 1) & (dc < D1), fails, 0)
        # a depth column beyond the path's leaf counts as a failure (node = -1 -> a = 0)
        cum = tl.cumsum(fails, axis=1)
        lead = tl.sum(tl.where((cum == 0) & (dc >= 1) & (dc < D1), 1, 0), axis=1)  # [BLOCK_P]
        lead = tl.where(tl.arange(0, BLOCK_P) < P, lead, -1)
        mx = tl.max(lead, axis=0)
        pidx = tl.arange(0, BLOCK_P)
        bp = tl.min(tl.where(lead == mx, pidx, BLOCK_P), axis=0)
        tl.store(best_ptr + b, bp.to(tl.int64))
        tl.store(len_ptr + b, mx.to(tl.int64))


def evaluate_candidates_triton(logits, cand, retrieve, parent, mode: str = "greedy", temperature: float = 1.0,
                               eps: float = 0.09, alpha: float = 0.3, block_v: int | None = None):
    """The Triton path (CUDA tensors, or CPU under TRITON_INTERPRET=1)."""
    require_triton("evaluate_candidates_ref")
    if mode not in ("greedy", "typical"):
        raise ValueError(f"mode={mode!r}: choose greedy or typical")
    B, N1, V = logits.shape
    x = logits if logits.stride(-1) == 1 else logits.contiguous()
    dev = x.device
    cand = cand.to(torch.long).contiguous()
    retrieve = retrieve.to(device=dev, dtype=torch.long).contiguous()
    parent = parent.to(device=dev, dtype=torch.long).contiguous()
    P, D1 = retrieve.shape
    amax = torch.empty(B, N1, dtype=torch.long, device=dev)
    lse = torch.empty(B, N1, dtype=torch.float32, device=dev)
    thr = torch.empty(B, N1, dtype=torch.float32, device=dev)
    acc = torch.zeros(B, N1, dtype=torch.int32, device=dev)
    best = torch.empty(B, dtype=torch.long, device=dev)
    length = torch.empty(B, dtype=torch.long, device=dev)
    if block_v is None:
        block_v = min(4096, triton.next_power_of_2(V))
    _eval_kernel[(B,)](x, cand, retrieve, parent, amax, lse, thr, acc, best, length, N1, V, P, D1,
                       x.stride(0), x.stride(1), 1.0 / float(temperature), float(eps), float(alpha),
                       TYPICAL=mode == "typical", BLOCK_V=block_v, BLOCK_N=triton.next_power_of_2(N1),
                       BLOCK_P=triton.next_power_of_2(P), BLOCK_D=triton.next_power_of_2(D1))
    return best, length, amax



def evaluate_candidates(logits, cand, retrieve, parent, mode: str = "greedy", temperature: float = 1.0,
                        eps: float = 0.09, alpha: float = 0.3, force: bool = False):
    """(best_path, accept_len, node_argmax): Triton on CUDA, the torch reference on CPU
    (force=True runs Triton on CPU under TRITON_INTERPRET=1, for tests)."""
    if use_triton(logits, force):
        return evaluate_candidates_triton(logits, cand, retrieve, parent, mode, temperature, eps, alpha)
    return evaluate_candidates_ref(logits, cand, retrieve, parent, mode, temperature, eps, alpha)
