"""Unmask policies for the dLLM block loop (`accel.decoding.dllm.generate_blockwise`): the contract
and the training-free rules (Fast-dLLM's confidence threshold and factor rule, dParallel's entropy
rule, a step cap). A recipe's decoder is a policy too (Learn2PD's filter), written against the same
two types, so the loop never changes for a new rule.

A policy is called once per forward: ``policy(state: BlockState) -> BlockDecision``

- ``BlockState`` describes the current block only (blk = its length): ``logits [R, blk, V]``
  (aligned: logits[:, j] predicts block position j; the mask token's column is -inf, so
  no rule can "unmask" a position to [MASK] and stall), ``x0 [R, blk]`` (argmax, or the
  Gumbel-noised argmax at temperature > 0), ``confidence [R, blk]`` (softmax probability of x0,
  float32), ``entropy [R, blk]`` (nats), ``masked [R, blk]`` bool, ``rows [R]`` (the batch
  indices these R rows are: only rows that still have masks in the block are forwarded),
  ``x`` (the whole canvas [B, L], L possibly cropped), ``prompt_len``, ``block_start``,
  ``block_index`` and ``step_in_block`` (0 = the block's first forward).
- ``BlockDecision.transfer [R, blk]`` bool: positions to unmask with x0 (unmasked positions
  are ignored). The loop guarantees progress: a row whose transfer is empty gets its most
  confident masked position, so policies need not guard (but may).
- ``BlockDecision.end_at`` (LongTensor [R] or None): ``end_at[r] >= 0`` is an absolute canvas
  position where row ``rows[r]`` ends (End-of-Text Prediction): that position becomes an end
  token (x0 if it is one, else the adapter's first end id) and every later position the first
  end id; tokens before it are kept. ``-1`` = no truncation. A row with no masks left before
  its end costs no more forwards; once every row has ended, the canvas is cropped to the
  block boundary after the last end, so later forwards are shorter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class BlockState:
    """What a policy sees at one forward, for the current block (contract: module docstring)."""
    logits: torch.Tensor
    x0: torch.Tensor
    confidence: torch.Tensor
    entropy: torch.Tensor
    masked: torch.Tensor
    rows: torch.Tensor
    x: torch.Tensor
    prompt_len: int
    block_start: int
    block_index: int
    step_in_block: int


@dataclass
class BlockDecision:
    """transfer [R, blk] bool; end_at [R] absolute end positions (-1: none) or None."""
    transfer: torch.Tensor
    end_at: torch.Tensor | None = None


Policy = Callable[[BlockState], BlockDecision]


def most_confident(conf: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """[R, blk] one-hot of the most confident masked position (rows without masks: none)."""
    c = conf.masked_fill(~masked, -float("inf"))
    out = torch.zeros_like(masked)
    out.scatter_(1, c.argmax(1, keepdim=True), True)
    return out & masked.any(1, keepdim=True)


def confidence_policy(threshold: float = 0.9, factor: float | None = None) -> Policy:
    """Fast-dLLM: unmask masked positions with confidence >= threshold (at least the best one).

    factor=f: the factor rule instead, the largest n whose n-th best confidence >= 1 - f/(n+1).
    """
    def policy(st: BlockState) -> BlockDecision:
        conf = st.confidence.masked_fill(~st.masked, -float("inf"))
        if factor is None:
            transfer = st.masked & (conf >= threshold)
        else:
            srt, order = conf.sort(dim=1, descending=True, stable=True)
            n = torch.arange(1, conf.shape[1] + 1, device=conf.device, dtype=srt.dtype)
            ok = (srt >= 1 - factor / (n + 1)).long().cumprod(1)  # monotone: stops at the first failure
            take = ok.sum(1, keepdim=True).clamp(min=1)
            rank = torch.empty_like(order).scatter_(1, order, torch.arange(conf.shape[1], device=conf.device)
                                                     .expand_as(order).contiguous())
            transfer = st.masked & (rank < take)
        return BlockDecision(transfer | most_confident(st.confidence, st.masked))
    return policy


def entropy_policy(threshold: float = 0.5) -> Policy:
    """dParallel: unmask the lowest-entropy masked position plus every one with entropy < threshold."""
    def policy(st: BlockState) -> BlockDecision:
        ent = st.entropy.masked_fill(~st.masked, float("inf"))
        lowest = torch.zeros_like(st.masked).scatter_(1, ent.argmin(1, keepdim=True), True) & st.masked
        return BlockDecision(lowest | (st.masked & (st.entropy < threshold)))
    return policy


def step_cap(policy: Policy, max_steps: int) -> Policy:
    """Bounds forwards per block: at step max_steps - 1 every remaining masked position is unmasked."""
    def capped(st: BlockState) -> BlockDecision:
        dec = policy(st)
        if st.step_in_block >= max_steps - 1:
            return BlockDecision(st.masked.clone(), dec.end_at)
        return dec
    return capped
