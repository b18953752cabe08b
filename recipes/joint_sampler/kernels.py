"""Fused per-pass sampling step of the joint sampler: Triton kernel + torch reference.

Each of the K unmasking passes of a step needs, for every row: per block position the
confidence (softmax probability of the argmax, as in LLaDA), a token drawn at temperature T
(Gumbel-max: argmax(logits / T + g)), then the most confident position among those still
available (masked and not chosen earlier in the step) and its token. In eager torch that is a
softmax over [R, blk, V], a gather, a noisy argmax and a masked argmax; the kernel reads the
logits once per position (online max / sum) and emits (position, token, confidence) per row.

Conventions shared by kernel and reference (the reference is the CPU path and test oracle):
- float32 statistics whatever the input dtype; ties go to the lowest vocab id / position;
- ``gumbel`` is the noise tensor (same shape as logits, float32) or None for greedy; it is
  passed in rather than drawn inside the kernel so a caller's torch.Generator decides the
  randomness and the two paths stay bit-comparable;
- ``-inf`` logits (e.g. the [MASK] column) have probability 0 and are never drawn;
- a row with no available position returns position -1, token 0, confidence 0.
"""
from __future__ import annotations


import torch

from accel.core.triton_gate import require_triton, tl, triton, use_triton  # noqa: F401 (tl: the kernels' language)


def gumbel_noise(shape, generator=None, device=None) -> torch.Tensor:
    """Standard Gumbel noise -log(-log u) in float32 (u kept away from 0 and 1)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    u = u.clamp(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def sample_step_ref(logits: torch.Tensor, avail: torch.Tensor, temperature: float = 0.0,
                    gumbel: torch.Tensor | None = None):
    """(pos [R] long, tok [R] long, conf [R] f32) for logits [R, N, V], avail [R, N] bool."""
    x = logits.float()
    conf = torch.softmax(x, dim=-1).amax(-1)  # all -inf position -> nan; excluded below
    conf = torch.nan_to_num(conf, nan=0.0)
    if temperature > 0 and gumbel is not None:
        tok = (x / temperature + gumbel.float()).argmax(-1)
    else:
        tok = x.argmax(-1)
    c = conf.masked_fill(~avail, -1.0)
    pos = c.argmax(-1)
    has = avail.any(-1)
    best_tok = tok.gather(1, pos[:, None]).squeeze(1)
    best_conf = conf.gather(1, pos[:, None]).squeeze(1)
    return (torch.where(has, pos, torch.full_like(pos, -1)), torch.where(has, best_tok, torch.zeros_like(best_tok)),
            torch.where(has, best_conf, torch.zeros_like(best_conf)))


if triton is not None:
    @triton.jit
    def _step_kernel(x_ptr, g_ptr, a_ptr, pos_ptr, tok_ptr, conf_ptr, N, V, inv_t,
                     s_row, s_pos, a_row, HAS_NOISE: tl.constexpr, BLOCK_V: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        offs = tl.arange(0, BLOCK_V)
        NEG_INF: tl.constexpr = float("-inf")
        best_c = tl.full((), -1.0, tl.float32)
        best_p = tl.full((), -1, tl.int64)
        best_t = tl.zeros((), tl.int64)
        for n in range(0, N):
            ok = tl.load(a_ptr + row * a_row + n) != 0
            base = row * s_row + n * s_pos
            m = tl.full((), NEG_INF, tl.float32)
            S = tl.zeros((), tl.float32)
            ym = tl.full((), NEG_INF, tl.float32)
            yi = tl.zeros((), tl.int64)
            for start in range(0, V, BLOCK_V):
                idx = start + offs
                inb = idx < V
                x = tl.load(x_ptr + base + idx, mask=inb, other=NEG_INF).to(tl.float32)
                cmax = tl.max(x, axis=0)
                m_new = tl.maximum(m, cmax)
                live = m_new > NEG_INF
                S = tl.where(m > NEG_INF, S * tl.exp(m - tl.where(live, m_new, 0.0)), 0.0)
                S += tl.sum(tl.where(x > NEG_INF, tl.exp(x - tl.where(live, m_new, 0.0)), 0.0), axis=0)
                m = m_new
                if HAS_NOISE:
                    g = tl.load(g_ptr + base + idx, mask=inb, other=0.0).to(tl.float32)
                    y = tl.where(x > NEG_INF, x * inv_t + g, NEG_INF)
                else:
                    y = x
                cy = tl.max(y, axis=0)
                cyi = tl.min(tl.where((y == cy) & inb, idx, V), axis=0).to(tl.int64)
                take = cy > ym  # strict: the earlier chunk keeps ties (lowest id)
                yi = tl.where(take, cyi, yi)
                ym = tl.maximum(ym, cy)
            c = tl.where(m > NEG_INF, 1.0 / tl.where(m > NEG_INF, S, 1.0), 0.0)
            better = ok & (c > best_c)
            best_c = tl.where(better, c, best_c)
            best_p = tl.where(better, n, best_p)
            best_t = tl.where(better, yi, best_t)
        found = best_p >= 0
        tl.store(pos_ptr + row, best_p)
        tl.store(tok_ptr + row, tl.where(found, best_t, 0))
        tl.store(conf_ptr + row, tl.where(found, best_c, 0.0))



def sample_step_triton(logits: torch.Tensor, avail: torch.Tensor, temperature: float = 0.0,
                       gumbel: torch.Tensor | None = None, block_v: int | None = None):
    """The Triton path (CUDA, or CPU tensors under TRITON_INTERPRET=1)."""
    require_triton("sample_step_ref")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"sample_step: unsupported dtype {logits.dtype}; use float32, bfloat16 or float16")
    R, N, V = logits.shape
    x = logits if logits.stride(-1) == 1 else logits.contiguous()
    noise = temperature > 0 and gumbel is not None
    g = gumbel.float().expand_as(x).contiguous() if noise else x
    if noise and g.stride() != x.stride():
        x = x.contiguous()
        g = g.contiguous()
    a = avail.to(torch.int8).contiguous()
    pos = torch.empty(R, dtype=torch.long, device=x.device)
    tok = torch.empty(R, dtype=torch.long, device=x.device)
    conf = torch.empty(R, dtype=torch.float32, device=x.device)
    if R:
        block_v = block_v or min(4096, triton.next_power_of_2(V))
        _step_kernel[(R,)](x, g, a, pos, tok, conf, N, V, 1.0 / temperature if noise else 1.0,
                           x.stride(0), x.stride(1), a.stride(0), HAS_NOISE=noise, BLOCK_V=block_v,
                           num_warps=8 if block_v >= 2048 else 4)
    return pos, tok, conf


def sample_step(logits: torch.Tensor, avail: torch.Tensor, temperature: float = 0.0,
                gumbel: torch.Tensor | None = None, force: bool = False):
    """One sampling pass: Triton on CUDA tensors (or CPU with force=True under TRITON_INTERPRET=1),
    the torch reference otherwise. Returns (pos, tok, conf) per row."""
    if use_triton(logits, force):
        return sample_step_triton(logits, avail, temperature, gumbel)
    return sample_step_ref(logits, avail, temperature, gumbel)
