"""Medusa losses and the head-accuracy measurements that choose checkpoints and the tree.

Alignment: with hidden states h [B, L, H] and labels [B, L] (-100 = no loss, labels[t] is the
token at t), the base predicts labels[t+1] from h_t and head k predicts labels[t+k+2].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from accel.decoding.tree_build import chain_accept_length
from accel.recipes.shared.heads import log_head


def head_targets(labels: torch.Tensor, k: int) -> tuple[torch.Tensor, int]:
    """(targets [B, L-k-2], n): labels shifted for head k; positions t < L-k-2 predict t+k+2."""
    shift = k + 2
    return labels[:, shift:], labels.shape[1] - shift


def heads_loss(head_logits: torch.Tensor, labels: torch.Tensor, decay: float, topk: int = 4,
               base_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """sum_k decay**k * loss_k and per-head metrics.

    head_logits [B, L, K, V]. loss_k = CE to the shifted labels, or (base_logits given:
    self-distillation) KL(softmax(base) || softmax(head)) where the base's distribution at
    t+k+1 (which predicts token t+k+2) is the target, on the same supervised positions.
    Metrics: head{k}_top1 / head{k}_top{topk} accuracy against the labels, est_accept_len
    (a top-1 chain: 1 + sum_k prod_{j<=k} top1_j).
    """
    K = head_logits.shape[2]
    total = head_logits.new_zeros(())
    metrics, top1s = {}, []
    for k in range(K):
        tgt, n = head_targets(labels, k)
        if n <= 0:
            break
        lg = head_logits[:, :n, k].float()
        keep = tgt != -100
        if not bool(keep.any()):
            top1s.append(0.0)
            continue
        sel = lg[keep]
        if base_logits is not None:
            teacher = base_logits[:, k + 1:k + 1 + n].float()[keep]
            loss_k = F.kl_div(F.log_softmax(sel, -1), F.log_softmax(teacher, -1), log_target=True,
                              reduction="batchmean")
        else:
            loss_k = F.cross_entropy(sel, tgt[keep])
        total = total + (decay ** k) * loss_k
        y = tgt[keep]
        top1s.append(log_head(metrics, k, loss_k, sel, y, topk))
    metrics["est_accept_len"] = chain_accept_length(top1s)
    return total, metrics


@torch.no_grad()
def rank_counts(head_logits: torch.Tensor, labels: torch.Tensor, topk: int) -> torch.Tensor:
    """[K, topk + 1] counts: how often the true token was head k's c-th choice (last column: outside
    the top-k), over supervised positions. Summed over batches, normalised into accuracies."""
    K = head_logits.shape[2]
    out = torch.zeros(K, topk + 1, dtype=torch.long)
    for k in range(K):
        tgt, n = head_targets(labels, k)
        if n <= 0:
            continue
        keep = tgt != -100
        sel = head_logits[:, :n, k][keep].float()
        y = tgt[keep]
        top = sel.topk(min(topk, sel.shape[-1]), -1).indices
        hit = top == y[:, None]
        rank = torch.where(hit.any(-1), hit.float().argmax(-1), torch.full_like(y, topk))
        out[k] += torch.bincount(rank.cpu(), minlength=topk + 1)
    return out


def accuracies(counts: torch.Tensor) -> list[list[float]]:
    """acc[k][c] = P(true token is head k's c-th choice) from rank_counts."""
    tot = counts.sum(-1, keepdim=True).clamp(min=1)
    return (counts[:, :-1].double() / tot).tolist()
