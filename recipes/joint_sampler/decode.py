"""K tokens per full forward: one backbone forward, then K-1 sampler passes (or marginals).

The step rule, per row and within the current block (semi-AR, earlier blocks first):

1. one full forward of the frozen dLLM -> logits and final hidden states h;
2. pass 0 takes the most confident masked position (softmax probability of the argmax, the
   base sampler's order) and draws its token at temperature T (Gumbel-max; argmax at T=0);
3. passes 1..K-1: ``mode="joint"`` runs the sampler layer on h plus the tokens chosen so far
   in this step and repeats the choice on its logits; ``mode="marginal"`` (the baseline)
   reuses the step's logits, i.e. unmasks the top-K positions with independent draws.

K=1 is the exact one-token-per-forward sampler whose joint the sampler imitates. At T=0 the
order is LLaDA's; at T > 0 positions are ordered by the un-noised confidence (LLaDA orders by
the probability of the Gumbel-drawn token) so the K-step joint is a finite tree that
`evaluate.py` can enumerate exactly. NFE counts full forwards only; sampler passes are
reported separately (extra["sampler_passes"], and as a bench row metric).

Early exit: once a row's response has an end token with no mask before it, its remaining
masks become end tokens and it costs no more forwards (its output stops at that end token).
"""
from __future__ import annotations

import torch

from accel.decoding.dllm import end_free_rows, finish, init_canvas
from accel.models.masks import full_mask, position_ids
from accel.recipes.joint_sampler.kernels import gumbel_noise, sample_step
from accel.recipes.joint_sampler.layer import additive_mask, backbone_forward, sampler_logits

MODES = ("joint", "marginal")


def check_args(k: int, mode: str, sampler, temperature: float):
    if not 1 <= int(k) <= 8:
        raise ValueError(f"k={k}: tokens per full forward must be in 1..8")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: choose joint or marginal")
    if mode == "joint" and k > 1 and sampler is None:
        raise ValueError("mode='joint' with k > 1 needs a trained sampler layer (export a joint-sampler run)")
    if temperature < 0:
        raise ValueError(f"temperature={temperature}: must be >= 0 (0 = greedy)")


def _block_logits(logits: torch.Tensor, s: int, e: int, mask_id: int, n_tokens: int | None = None) -> torch.Tensor:
    blk = logits[:, s:e].float()
    blk[..., mask_id] = -float("inf")  # [MASK] is never a prediction
    if n_tokens is not None:
        blk[..., n_tokens:] = -float("inf")  # padded vocabulary rows (Dream) are no token
    return blk


def end_rows(x: torch.Tensor, P: int, mask_id: int, eos_ids) -> torch.Tensor:
    """In place: rows whose response has an end token with no mask before it get their remaining
    masks turned into end tokens. Returns the bool [B] of such rows."""
    return end_free_rows(x, P, x == mask_id, eos_ids)[0]


def block_forwards(x: torch.Tensor, P: int, gen_len: int, block_len: int, mask_id: int):
    """The semi-AR block loop: yields (block index, start, end, rows still masked in the block) once per
    full forward. The caller unmasks in `x` itself (in place) before asking for the next one."""
    for b in range(gen_len // block_len):
        s, e = P + b * block_len, P + (b + 1) * block_len
        while True:
            active = (x[:, s:e] == mask_id).any(1)
            if not active.any():
                break
            yield b, s, e, torch.nonzero(active).flatten()


@torch.no_grad()
def generate_joint(adapter, prompts: list[list[int]], gen_len: int = 64, block_len: int = 32, k: int = 4,
                   sampler=None, mode: str = "joint", temperature: float = 0.0, generator=None,
                   early_exit: bool = True, force_kernel: bool = False):
    """Decodes a batch with up to k tokens per full forward (rule: module docstring) -> DecodeResult."""
    check_args(k, mode, sampler, temperature)
    if block_len < 1 or gen_len < 1 or gen_len % block_len:
        raise ValueError(f"gen_len ({gen_len}) must be a positive multiple of block_len ({block_len})")
    x, valid, P = init_canvas(adapter, prompts, gen_len)
    attn, pos = full_mask(valid), position_ids(valid)
    bias = additive_mask(attn, next(sampler.parameters()).dtype) if mode == "joint" and k > 1 else None
    B = x.shape[0]
    mask_id, eos_ids = adapter.mask_id, tuple(adapter.eos_ids)
    nfe = torch.zeros(B, dtype=torch.long, device=x.device)
    passes = torch.zeros(B, dtype=torch.long, device=x.device)
    for _, s, e, rows in block_forwards(x, P, gen_len, block_len, mask_id):
        xr = x[rows]
        logits, h = backbone_forward(adapter, xr, attn[rows], pos[rows])
        nfe[rows] += 1
        blk = _block_logits(logits, s, e, mask_id, adapter.n_tokens)
        avail = xr[:, s:e] == mask_id
        new = torch.zeros_like(xr, dtype=torch.bool)
        for j in range(k):
            live = avail.any(1)
            if not live.any():
                break
            if j > 0 and mode == "joint":
                lj = sampler_logits(adapter, sampler, h, xr, new, bias[rows], pos[rows])
                blk = _block_logits(lj, s, e, mask_id, adapter.n_tokens)
                passes[rows[live]] += 1
            g = gumbel_noise(blk.shape, generator, blk.device) if temperature > 0 else None
            p, t, _ = sample_step(blk, avail, temperature, g, force=force_kernel)
            r = torch.nonzero(p >= 0).flatten()
            xr[r, s + p[r]] = t[r]
            new[r, s + p[r]] = True
            avail[r, p[r]] = False
        x[rows] = xr
        if early_exit:
            end_rows(x, P, mask_id, eos_ids)
    res = finish(adapter, x, P, nfe.tolist(), sampler_passes=passes.tolist())
    res.extra["row_metrics"] = {"sampler_passes": [float(v) for v in passes.tolist()]}
    return res
