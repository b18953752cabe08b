"""D2F noising: per-block mask ratios that rise monotonically left to right.

Block 0 draws p0 ~ U(lo, hi); each next block adds U(0, 1) * (hi - p0) / (N - 1), so the last
block's ratio never exceeds hi (the increments sum to at most hi - p0). Later blocks being
noisier is what pipelined decoding sees: an earlier block is always further along. Positions
are masked i.i.d. with their block's ratio (at least one masked response position per row, so
every row carries loss). Deterministic given a torch.Generator.
"""
from __future__ import annotations

import torch


def block_ratios(batch: int, n_blocks: int, lo: float = 0.2, hi: float = 0.7, generator=None,
                 device=None) -> torch.Tensor:
    """[B, N] monotonically non-decreasing mask ratios in [lo, hi]."""
    p0 = lo + (hi - lo) * torch.rand(batch, 1, generator=generator, device=device)
    if n_blocks == 1:
        return p0
    inc = torch.rand(batch, n_blocks - 1, generator=generator, device=device) * (hi - p0) / (n_blocks - 1)
    return torch.cat([p0, p0 + inc.cumsum(1)], 1).clamp(max=hi)


def noise_mask(batch: int, resp_len: int, block_len: int, lo: float = 0.2, hi: float = 0.7, generator=None,
               device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked [B, resp_len] bool, ratio [B, resp_len] = each position's block ratio)."""
    n_blocks = -(-resp_len // block_len)
    ratios = block_ratios(batch, n_blocks, lo, hi, generator, device)
    per_pos = ratios.repeat_interleave(block_len, dim=1)[:, :resp_len]
    masked = torch.rand(batch, resp_len, generator=generator, device=device) < per_pos
    none = ~masked.any(1)
    if none.any():  # every row carries loss: mask the first position of rows that drew none
        masked[none, 0] = True
    return masked, per_pos
