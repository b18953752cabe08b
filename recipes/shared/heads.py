"""What Medusa's and Hydra's draft heads share: the reduced draft vocabulary they may predict over and
the per-head statistics their losses log (same keys in both recipes)."""
from __future__ import annotations

import torch


def set_token_map(module, token_map, vocab: int) -> int:
    """Registers `token_map` (draft index i -> full id, `accel.data.draft_vocab`) as a buffer of `module`,
    or sets it to None for the full vocabulary; returns the size the heads predict over."""
    if token_map is None:
        module.token_map = None
        return vocab
    module.register_buffer("token_map", torch.as_tensor(token_map, dtype=torch.long).clone())
    return len(module.token_map)


def log_head(metrics: dict, k: int, loss, logits, y, topk: int) -> float:
    """head{k}_loss, head{k}_top1 and head{k}_top{topk} of one head's logits [N, V] against targets [N]
    into `metrics`; returns the top-1 accuracy (for the chain acceptance estimate)."""
    top = logits.topk(min(topk, logits.shape[-1]), -1).indices
    t1 = float((top[:, 0] == y).float().mean())
    metrics[f"head{k}_loss"] = float(loss.detach())
    metrics[f"head{k}_top1"] = t1
    metrics[f"head{k}_top{topk}"] = float((top == y[:, None]).any(-1).float().mean())
    return t1
