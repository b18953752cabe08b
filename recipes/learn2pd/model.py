"""The Learn2PD filter: block confidence vector -> one "already final?" logit per position.

Architecture (open in the paper; docs/recipes/learn2pd.md): Linear(L, H) -> ReLU -> Linear(H, L); at
L = H = 32 that is 2,112 parameters. Trained with BCE-with-logits, full batch, AdamW. Loss is on
still-masked positions by default (`loss_on="masked"`): decode only ever asks the filter about
masked positions, so decoded ones (always labelled true) would only bias it. Metrics are
reported on masked positions too, at the decode threshold, because false positives there are
what cost accuracy.
"""
from __future__ import annotations

import torch
from torch import nn


class UnmaskFilter(nn.Module):
    def __init__(self, block_len: int = 32, hidden_size: int = 32):
        super().__init__()
        self.block_len, self.hidden_size = block_len, hidden_size
        self.fc1 = nn.Linear(block_len, hidden_size)
        self.fc2 = nn.Linear(hidden_size, block_len)

    def forward(self, conf: torch.Tensor) -> torch.Tensor:
        """conf [..., L] (softmax max-prob per block position) -> logits [..., L]."""
        return self.fc2(torch.relu(self.fc1(conf.to(self.fc1.weight.dtype))))


def oracle_tensors(ds) -> dict[str, torch.Tensor]:
    """{'conf' float [N, L], 'label' float [N, L], 'masked' bool [N, L], 'prompt_idx' long [N]} from the dataset."""
    cols = ds.with_format("torch", columns=["conf", "label", "masked", "prompt_idx"])[:]
    return {"conf": cols["conf"].float(), "label": cols["label"].float(), "masked": cols["masked"].bool(),
            "prompt_idx": cols["prompt_idx"].long()}


def split_by_prompt(t: dict[str, torch.Tensor], val_fraction: float, seed: int = 0):
    """(train, val): held-out prompts (not steps), so val steps never share a decode with train ones."""
    prompts = torch.unique(t["prompt_idx"])
    g = torch.Generator().manual_seed(seed)
    perm = prompts[torch.randperm(len(prompts), generator=g)]
    n_val = int(round(len(prompts) * val_fraction))
    if val_fraction > 0 and len(prompts) > 1:
        n_val = min(max(n_val, 1), len(prompts) - 1)
    is_val = torch.isin(t["prompt_idx"], perm[:n_val])
    return ({k: v[~is_val] for k, v in t.items()}, {k: v[is_val] for k, v in t.items()})


def shifted_copies(t: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """Every step also at n - 1 more circular offsets of its block (n evenly spaced offsets in all).

    Why: a filter that sees each format only where its answers sit learns position shortcuts. The
    built-in suite's uncertain tokens are at the block's front (shuffle, pick3) and its confident
    padding behind, so a filter trained without arith accepted arith's uncertain sum digits at
    positions 14-18 at any tau (scripts/l2p_transfer.py, docs/long-world.md). Shifted copies show
    every confidence pattern at every position, so a position's own confidence has to decide."""
    if n <= 1:
        return t
    L = t["conf"].shape[-1]
    offsets = sorted({round(i * L / n) % L for i in range(n)})
    out = {}
    for k, v in t.items():
        if v.dim() == 2 and v.shape[-1] == L:
            out[k] = torch.cat([torch.roll(v, o, dims=-1) for o in offsets])
        else:
            out[k] = v.repeat(len(offsets), *([1] * (v.dim() - 1)))
    return out


def bce_loss(model: UnmaskFilter, batch: dict, loss_on: str = "masked") -> torch.Tensor:
    logits = model(batch["conf"])
    loss = nn.functional.binary_cross_entropy_with_logits(logits, batch["label"], reduction="none")
    if loss_on == "masked":
        w = batch["masked"].float()
        return (loss * w).sum() / w.sum().clamp(min=1)
    return loss.mean()


@torch.no_grad()
def classification_metrics(model: UnmaskFilter, batch: dict, tau: float, prefix: str = "") -> dict[str, float]:
    """Precision / recall / false-positive rate of sigmoid(logit) > tau on masked positions."""
    if batch["conf"].numel() == 0:
        return {}
    prob = torch.sigmoid(model(batch["conf"]))
    m = batch["masked"]
    y = batch["label"].bool()[m]
    pred = (prob > tau)[m]
    tp, fp = (pred & y).sum().item(), (pred & ~y).sum().item()
    fn, tn = (~pred & y).sum().item(), (~pred & ~y).sum().item()
    return {f"{prefix}precision": tp / max(tp + fp, 1), f"{prefix}recall": tp / max(tp + fn, 1),
            f"{prefix}fpr": fp / max(fp + tn, 1), f"{prefix}positives": float(y.float().mean().item()),
            f"{prefix}bce": bce_loss(model, batch).item(), f"{prefix}n": float(m.sum().item())}


def train_filter(model: UnmaskFilter, train: dict, steps: int, lr: float = 3e-3, weight_decay: float = 0.0,
                 loss_on: str = "masked", log=None, log_every: int = 50) -> list[float]:
    """Plain full-batch AdamW loop (the trainer-free path, used by tests and tiny runs); returns losses."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for step in range(steps):
        loss = bce_loss(model, train, loss_on)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if log is not None and (step % log_every == 0 or step == steps - 1):
            log({"step": step + 1, "loss": losses[-1]})
    return losses
