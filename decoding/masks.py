"""4D boolean attention masks ([B, 1, Lq, Lk], True = may attend) for dLLM forwards.

transformers' Llama honours such masks with eager and sdpa attention, which is how the same
architecture runs bidirectionally or block-causally without patching.
"""
from __future__ import annotations

import torch


def full_mask(key_valid: torch.Tensor, q_len: int | None = None) -> torch.Tensor:
    """Bidirectional: every query sees every valid (non-padding) key.

    key_valid: [B, Lk] bool. Queries are the last q_len keys (a KV-cached forward).
    """
    B, Lk = key_valid.shape
    q_len = Lk if q_len is None else q_len
    return key_valid[:, None, None, :].expand(B, 1, q_len, Lk)


def block_causal_mask(key_valid: torch.Tensor, prompt_len: int, block_len: int, q_start: int = 0,
                      q_len: int | None = None) -> torch.Tensor:
    """Prompt visible to all; full attention inside a response block; causal across blocks.

    Column j belongs to block -1 (prompt) if j < prompt_len, else (j - prompt_len) // block_len.
    A query row sees keys whose block id is <= its own. Queries are columns q_start..q_start+q_len.
    """
    B, Lk = key_valid.shape
    q_len = Lk - q_start if q_len is None else q_len
    idx = torch.arange(Lk, device=key_valid.device)
    blk = torch.where(idx < prompt_len, torch.full_like(idx, -1), (idx - prompt_len) // block_len)
    qb = blk[q_start:q_start + q_len]
    allowed = blk[None, :] <= qb[:, None]  # [q, Lk]
    return allowed[None, None] & key_valid[:, None, None, :]


def position_ids(key_valid: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first real token (left padding gets 0)."""
    return (key_valid.long().cumsum(-1) - 1).clamp(min=0)
