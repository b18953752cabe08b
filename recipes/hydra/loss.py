"""Hydra losses and the acceptance statistics logged while training.

Head k at position t is teacher-forced with the true tokens x_{t+1..t+k} and trained on
token t+k+1, only where that token is a response (or end) token:

- ``ce``: cross-entropy against the data token x_{t+k+1} (Hydra);
- ``distill``: cross-entropy against the base model's softmax at position t+k, i.e. the
  distribution the base itself has for token t+k+1 (Hydra++'s teacher loss).

Heads are summed (Hydra++). Accuracies are measured against the base's *greedy* token for
t+k+1 — what greedy tree acceptance verifies — and the acceptance estimate counts, per
position, the base token plus the leading run of heads that are right *and* whose
teacher-forced input is what the base would have emitted (else the real decoder would never
have drafted from that prefix). On self-distilled data the two coincide.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from accel.decoding.tree_build import rank_metrics


def base_forward(base, ids, valid, position_ids):
    """(last hidden state [B,L,H] after the final norm, logits [B,L,V]) of a frozen causal LM."""
    with torch.no_grad():
        out = base.base_model(input_ids=ids, attention_mask=valid.long(), position_ids=position_ids)
        hidden = out.last_hidden_state
        logits = base.get_output_embeddings()(hidden)
    return hidden, logits


def head_targets(ids, labels, valid, k: int, n: int):
    """Mask [B,n] of positions t whose head-k target t+k+1 is a supervised token."""
    return (labels[:, k + 1:k + 1 + n] != -100) & valid[:, :n]


def hydra_loss(head_logits: list, ids, labels, valid, base_logits, mode: str = "distill"):
    """Sum over heads of the mean per-head loss; returns (loss, per-head losses as floats)."""
    total = base_logits.new_zeros((), dtype=torch.float32)
    per_head = []
    for k, lg in enumerate(head_logits, start=1):
        n = lg.shape[1]
        m = head_targets(ids, labels, valid, k, n)
        if n == 0 or not bool(m.any()):
            per_head.append(0.0)
            continue
        x = lg[m].float()
        if mode == "ce":
            lk = F.cross_entropy(x, ids[:, k + 1:k + 1 + n][m])
        elif mode == "distill":
            p = torch.softmax(base_logits[:, k:k + n][m].float(), dim=-1)
            lk = -(p * torch.log_softmax(x, dim=-1)).sum(-1).mean()
        else:
            raise ValueError(f"loss={mode!r}: use ce or distill")
        total = total + lk
        per_head.append(float(lk.detach()))
    return total, per_head


@torch.no_grad()
def head_ranks(head_logits: list, ids, labels, valid, base_logits, max_rank: int):
    """Per head k: the rank of the base's greedy token among the head's logits, and masks.

    Returns (ranks [B,T,K] long, usable [B,T,K] bool, anchor [B,T] bool) over positions
    t = 0..T-1 (T = L-2): `usable[...,k-1]` is True when head k's target is supervised and its
    teacher-forced input matches the base's greedy tokens; `anchor` marks positions counted in
    the acceptance estimate (head 1's target supervised). Ranks are capped at `max_rank`.
    """
    B, L = ids.shape
    T, K = max(L - 2, 0), len(head_logits)
    greedy = base_logits.argmax(-1)                      # greedy[:, t] = base token for t+1
    consistent = ids[:, 1:] == greedy[:, :-1]            # [B, L-1]: x_{t+1} is the base's token
    ranks = torch.full((B, T, K), max_rank, dtype=torch.long, device=ids.device)
    usable = torch.zeros((B, T, K), dtype=torch.bool, device=ids.device)
    for k, lg in enumerate(head_logits, start=1):
        n = lg.shape[1]
        if n == 0:
            continue
        tgt = greedy[:, k:k + n]
        score = lg.float().gather(-1, tgt[..., None])
        ranks[:, :n, k - 1] = (lg.float() > score).sum(-1).clamp(max=max_rank)
        cons = torch.stack([consistent[:, j:j + n] for j in range(k)], -1).all(-1)  # x_{t+1..t+k}
        usable[:, :n, k - 1] = head_targets(ids, labels, valid, k, n) & cons
    anchor = head_targets(ids, labels, valid, 1, T) if T else torch.zeros((B, 0), dtype=torch.bool)
    return ranks, usable, anchor


def step_metrics(ranks, usable, anchor, topk: int) -> dict:
    """Per-head top-1/top-k accuracy and the estimated mean accepted length (top-1 chain)."""
    return rank_metrics(ranks, usable, anchor, topk, lambda k: f"head{k + 1}_top1",
                        lambda k: f"head{k + 1}_top{topk}")


