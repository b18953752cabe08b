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
                      q_len: int | None = None, shift: bool = False) -> torch.Tensor:
    """Prompt visible to all; full attention inside a response block; causal across blocks.

    Column j belongs to block -1 (prompt) if j < prompt_len, else (j - prompt_len) // block_len.
    A query row sees keys whose block id is <= its own. Queries are columns q_start..q_start+q_len.

    shift: the model predicts token i from hidden state i-1 (AR-initialised dLLMs: Dream, the
    built-in). Blocks then group hidden states by the token they *predict*, so every group
    starts one column earlier: the last prompt token joins block 0 and each block's last token
    the next block. Without this the first token of every block would be predicted from a state
    that cannot see its own block, and is committed blind to what the block decodes around it
    (duplicates on shuffle-like answers). The price: a block's predictions do not see the
    block's own last token (it is read by the state that predicts the next block's first one);
    later blocks see it. Keys stay block-causal, so a finished group's KV cache stays exact.
    """
    B, Lk = key_valid.shape
    q_len = Lk - q_start if q_len is None else q_len
    prompt_len = prompt_len - int(shift)
    idx = torch.arange(Lk, device=key_valid.device)
    blk = torch.where(idx < prompt_len, torch.full_like(idx, -1), (idx - prompt_len) // block_len)
    qb = blk[q_start:q_start + q_len]
    allowed = blk[None, :] <= qb[:, None]  # [q, Lk]
    return allowed[None, None] & key_valid[:, None, None, :]


def position_ids(key_valid: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first real token (left padding gets 0)."""
    return (key_valid.long().cumsum(-1) - 1).clamp(min=0)
