"""Fused per-position argmax / softmax probability / entropy over the vocabulary.

Every dLLM sampler step needs, for each position of the current block, the greedy token, its
softmax probability (the "confidence") and the entropy of the distribution. Done in eager
torch that is a softmax materialised over [N, V] plus three reductions: ~4 passes over a
tensor that, for LLaDA (V = 126464), is the largest thing in the step. The Triton kernel reads
the logits once with an online softmax (running max m, S = sum exp(x - m),
T = sum exp(x - m) * (x - m)), so prob = 1 / S and entropy = log S - T / S.

Conventions shared by the kernel and the reference (the reference is the oracle):
- statistics are computed in float32 whatever the input dtype (fp32, bf16, fp16);
- ties in the argmax go to the lowest index, like ``torch.argmax``;
- ``-inf`` logits are allowed and contribute probability 0 (no NaN);
- a row whose logits are all ``-inf`` has no distribution: it returns id 0, prob 0.0 and
  entropy +inf, so threshold rules never pick it by confidence or by entropy;
- NaN or +inf logits are not supported (results are unspecified).
"""
from __future__ import annotations


import torch

from accel.core.triton_gate import require_triton, tl, triton, triton_available, use_triton  # noqa: F401 (tl: the kernels' language)


def argmax_prob_entropy_ref(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure-torch reference: (ids long, prob f32, entropy f32), each shaped logits.shape[:-1].

    Also what every decoder runs on a CPU, once per step over [rows, block, vocabulary], so it
    makes as few passes over the vocabulary as torch allows (max+argmax in one, the exponent,
    its sum, and one dot product for sum(e * z)), over a few rows at a time (`REF_CHUNK`), and
    keeps exp out of the denormal range: on a 126K vocabulary it cost as much as a cached LLaDA
    block forward before.
    """
    x = logits.float()
    V = x.shape[-1]
    rows = max(1, REF_CHUNK // max(V, 1))
    flat = x.reshape(-1, V)
    if flat.shape[0] > rows:  # a big vocabulary: a few rows at a time, so each pass stays in cache
        parts = [_stats(flat[i:i + rows]) for i in range(0, flat.shape[0], rows)]
        return tuple(torch.cat(p).reshape(x.shape[:-1]) for p in zip(*parts))
    return _stats(x)


REF_CHUNK = 1 << 20
"""Logits per chunk of `argmax_prob_entropy_ref` (4 MB of float32): each of its five passes over a
chunk then reads cache, not memory. On [8, 32, 126464] at one thread: 0.11 instead of 0.25 CPU-s,
bit-identical (every statistic is per row)."""


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m, ids = x.max(-1, keepdim=True)
    dead = torch.isneginf(m)  # all -inf rows
    m = m.masked_fill(dead, 0.0)
    # Below -87, exp(z) is under float32's smallest normal: a CPU computes such denormals ~10x slower
    # (a random or sharply peaked model puts most of a 126K vocabulary there), and they are below
    # float32's resolution of S >= 1 anyway. Clamping also turns -inf logits into finite terms, so
    # e * z never makes a nan from 0 * -inf.
    z = (x - m).clamp_(min=-87.0)
    e = torch.exp(z)
    S = e.sum(-1)
    T = torch.linalg.vecdot(e, z)
    dead = dead.squeeze(-1)
    prob = (1.0 / S).masked_fill(dead, 0.0)
    ent = (torch.log(S) - T / S).masked_fill(dead, float("inf"))
    return ids.squeeze(-1).masked_fill(dead, 0), prob, ent


if triton is not None:
    @triton.jit
    def online_argmax_entropy_step(x, idx, inb, V, m, best, S, T):
        """One vocabulary chunk of the online pass: running max m, argmax best, S = sum exp(x - m),
        T = sum exp(x - m) * (x - m); entropy = log S - T / S at the end. Shared by the fused kernels."""
        NEG_INF: tl.constexpr = float("-inf")
        cmax = tl.max(x, axis=0)
        # lowest index attaining the chunk max (V is used as "none")
        cidx = tl.min(tl.where((x == cmax) & inb, idx, V), axis=0).to(tl.int64)
        best = tl.where(cmax > m, cidx, best)  # strict: an earlier chunk keeps ties
        m_new = tl.maximum(m, cmax)
        # rescale old sums to the new max; guard -inf - -inf while everything seen is -inf
        live = m_new > NEG_INF
        both = live & (m > NEG_INF)
        d = tl.where(both, m, 0.0) - tl.where(both, m_new, 0.0)
        alpha = tl.exp(d)
        T = alpha * (T + d * S)
        S = alpha * S
        z = tl.where(x > NEG_INF, x - tl.where(live, m_new, 0.0), 0.0)
        e = tl.where(x > NEG_INF, tl.exp(z), 0.0)
        S += tl.sum(e, axis=0)
        T += tl.sum(e * z, axis=0)
        return m_new, best, S, T

    @triton.jit
    def online_row_stats(row_ptr, V, scale, BLOCK_V: tl.constexpr):
        """(m, best, S, T) of one row of V logits (times `scale`: 1 / temperature) in BLOCK_V chunks.
        Starts like torch.argmax on an all -inf row: best 0, m -inf, S = T = 0."""
        NEG_INF: tl.constexpr = float("-inf")
        offs = tl.arange(0, BLOCK_V)
        m = tl.full((), NEG_INF, tl.float32)
        S = tl.zeros((), tl.float32)
        T = tl.zeros((), tl.float32)
        best = tl.zeros((), tl.int64)
        for start in range(0, V, BLOCK_V):
            idx = start + offs
            inb = idx < V
            x = tl.load(row_ptr + idx, mask=inb, other=NEG_INF).to(tl.float32) * scale
            m, best, S, T = online_argmax_entropy_step(x, idx, inb, V, m, best, S, T)
        return m, best, S, T

    @triton.jit
    def _ape_kernel(x_ptr, ids_ptr, prob_ptr, ent_ptr, V, stride_row, BLOCK_V: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        NEG_INF: tl.constexpr = float("-inf")
        m, best, S, T = online_row_stats(x_ptr + row * stride_row, V, 1.0, BLOCK_V)
        dead = m == NEG_INF
        S_safe = tl.where(dead, 1.0, S)
        prob = tl.where(dead, 0.0, 1.0 / S_safe)
        ent = tl.where(dead, float("inf"), tl.log(S_safe) - T / S_safe)
        tl.store(ids_ptr + row, tl.where(dead, 0, best))
        tl.store(prob_ptr + row, prob)
        tl.store(ent_ptr + row, ent)



def argmax_prob_entropy_triton(logits: torch.Tensor, block_v: int | None = None):
    """The Triton path; logits [..., V] of float32/bfloat16/float16."""
    require_triton("argmax_prob_entropy_ref")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"argmax_prob_entropy: unsupported dtype {logits.dtype}; use float32, bfloat16 or float16")
    lead, V = logits.shape[:-1], logits.shape[-1]
    x = logits.reshape(-1, V)
    if x.stride(-1) != 1:
        x = x.contiguous()
    N = x.shape[0]
    ids = torch.empty(N, dtype=torch.long, device=x.device)
    prob = torch.empty(N, dtype=torch.float32, device=x.device)
    ent = torch.empty(N, dtype=torch.float32, device=x.device)
    if N:
        if block_v is None:
            block_v = min(4096, triton.next_power_of_2(V))
        num_warps = 8 if block_v >= 2048 else 4
        _ape_kernel[(N,)](x, ids, prob, ent, V, x.stride(0), BLOCK_V=block_v, num_warps=num_warps)
    return ids.reshape(lead), prob.reshape(lead), ent.reshape(lead)


def argmax_prob_entropy(logits: torch.Tensor, force: bool = False):
    """(argmax id, its softmax probability, entropy in nats) per position of logits [..., V].

    Triton on CUDA tensors when triton is installed; the torch reference otherwise. force=True
    runs the Triton path on CPU too when TRITON_INTERPRET=1 (how tests check the kernel).
    """
    if use_triton(logits, force):
        return argmax_prob_entropy_triton(logits)
    return argmax_prob_entropy_ref(logits)
