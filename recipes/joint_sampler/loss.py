"""Collation and the KL objective of the sampler layer.

One training state gives K-1 rows: row j (1..K-1) is the state's canvas with the tokens of
the trajectory's steps t..t+j-1 given to the sampler as "unmasked earlier in this step"; its
target is the frozen model's distribution at step t+j. Loss = mean over rows and over the
block positions still masked after those j tokens of KL(p_true || p_sampler) (the sampler's
[MASK] column removed like the target's), plus ``next_weight`` x the KL at the position the
true process unmasks next (the one the pass will most likely draw: averaged over a whole
block, which is mostly settled end-token padding, its signal is diluted). With target_topk = m the sum runs over the stored
top-m tokens (the truncated forward KL; cross-entropy minus entropy on that support).

Plus ``order_weight`` x the position-choice loss: cross-entropy of the true next position under
a softmax, over the still-masked positions, of the sampler's confidence logits
(`confidence_logit`, whose argmax is the decode rule's choice). The K-token joint includes
*where* the tokens go; on near-certain positions (end-token padding) the token KL is ~1e-5 and
cannot see which of two p ~ 0.99998 positions ranks first, so without this term the passes
fall back to the marginals' order there (measured: first-step TV worse than the marginals').

The backbone is frozen and only feeds h (one no-grad full forward per state); it is captured
by the loss closure, not registered in the trained module, so the trainer (and DeepSpeed)
only ever sees the sampler's parameters.
"""
from __future__ import annotations

import torch

from accel.models.masks import full_mask, position_ids
from accel.recipes.joint_sampler.layer import additive_mask, backbone_forward, sampler_logits


def collate(states: list[dict], pad_id: int) -> dict:
    """Left-pads prompts; stacks the per-state tensors."""
    P = max(len(s["prompt"]) for s in states)
    B = len(states)
    ids = torch.full((B, P), pad_id, dtype=torch.long)
    valid = torch.zeros((B, P), dtype=torch.bool)
    for i, s in enumerate(states):
        n = len(s["prompt"])
        ids[i, P - n:] = s["prompt"].long()
        valid[i, P - n:] = True
    resp = torch.stack([s["resp"] for s in states]).long()
    out = {"x": torch.cat([ids, resp], 1), "valid": torch.cat([valid, torch.ones_like(resp, dtype=torch.bool)], 1),
           "P": torch.tensor(P)}
    for key in ("block_start", "pos", "tok", "n_pass", "tgt", "tgt_idx"):
        if key in states[0]:
            out[key] = torch.stack([s[key] for s in states])
    return out


def expand_rows(batch: dict, mask_id: int):
    """Row tensors for the K-1 passes of every state: (row -> state index, x_rows, new, blk_index,
    still-masked [R, blk], row valid [R], true next position [R] (block-relative, -1 unknown))."""
    x, pos, tok, n_pass = batch["x"], batch["pos"].long(), batch["tok"].long(), batch["n_pass"].long()
    B, K = pos.shape
    J = K - 1
    P = int(batch["P"])
    blk = batch["tgt"].shape[2]
    dev = x.device
    src = torch.arange(B, device=dev).repeat_interleave(J)
    j = torch.arange(1, K, device=dev).repeat(B)  # tokens already chosen in this row's step
    starts = P + batch["block_start"].long()[src]
    bidx = starts[:, None] + torch.arange(blk, device=dev)[None, :]  # [R, blk] absolute block positions
    xr = x[src].clone()
    new = torch.zeros_like(xr, dtype=torch.bool)
    prior = torch.arange(K, device=dev)[None, :] < j[:, None]  # [R, K]: steps before pass j
    p_abs = starts[:, None] + pos[src].clamp(min=0)
    take = prior & (pos[src] >= 0)
    r_ix = torch.arange(len(src), device=dev)[:, None].expand_as(p_abs)
    xr[r_ix[take], p_abs[take]] = tok[src][take]
    new[r_ix[take], p_abs[take]] = True
    masked = xr.gather(1, bidx) == mask_id
    row_ok = j <= n_pass[src]
    nxt = pos[src].gather(1, j[:, None].clamp(max=K - 1)).squeeze(1)
    nxt = torch.where(row_ok, nxt, torch.full_like(nxt, -1))
    return src, xr, new, bidx, masked, row_ok, nxt


def kl_terms(lq: torch.Tensor, batch: dict, rows_tgt: torch.Tensor, rows_idx: torch.Tensor | None):
    """Per-position KL(p || q) [R, blk] from sampler log-probs lq [R, blk, V] and stored targets."""
    lp = rows_tgt.float()
    if rows_idx is not None:
        lq = lq.gather(-1, rows_idx.long())
    p = lp.exp()
    live = torch.isfinite(lp) & (p > 0)
    return torch.where(live, p * (lp - lq.clamp(min=-1e4)), torch.zeros_like(lp)).sum(-1)


def confidence_logit(logits: torch.Tensor) -> torch.Tensor:
    """logit(max softmax prob) per position, [..., V] -> [...]: the decode rule's confidence on a scale
    that still separates near-certain positions (p = 0.99998 vs 0.99997 is 10.8 vs 10.4 here,
    1e-5 apart in probability). Ranking by it is ranking by confidence."""
    top, arg = logits.max(-1, keepdim=True)
    rest = logits.scatter(-1, arg, -float("inf")).logsumexp(-1)
    return (top.squeeze(-1) - rest).nan_to_num(nan=0.0, posinf=1e4, neginf=-1e4)


def make_loss(adapter, next_weight: float = 1.0, order_weight: float = 0.0):
    """loss_fn(sampler, batch) -> (loss, metrics) for `fit` (see the module docstring)."""
    mask_id = adapter.mask_id

    def loss_fn(model, batch):
        x, valid = batch["x"], batch["valid"]
        attn, pos = full_mask(valid), position_ids(valid)
        with torch.no_grad():
            base_logits, h = backbone_forward(adapter, x, attn, pos)
        src, xr, new, bidx, masked, row_ok, nxt = expand_rows(batch, mask_id)
        J = batch["pos"].shape[1] - 1
        tgt = batch["tgt"].reshape((-1,) + tuple(batch["tgt"].shape[2:]))
        tidx = batch["tgt_idx"].reshape((-1,) + tuple(batch["tgt_idx"].shape[2:])) if "tgt_idx" in batch else None
        dtype = next(model.parameters()).dtype
        bias = additive_mask(attn, dtype)[src]
        logits = sampler_logits(adapter, model, h[src], xr, new, bias, pos[src])
        V = logits.shape[-1]
        blk_logits = logits.gather(1, bidx[..., None].expand(-1, -1, V)).float()
        blk_logits[..., mask_id] = -float("inf")
        lq = torch.log_softmax(blk_logits, -1)
        sel = masked & row_ok[:, None]
        kl = kl_terms(lq, batch, tgt, tidx)
        n = sel.sum().clamp(min=1)
        loss = (kl * sel).sum() / n
        have = row_ok & (nxt >= 0)
        kl_next = kl.gather(1, nxt.clamp(min=0)[:, None]).squeeze(1)[have].mean() if have.any() else loss * 0
        if next_weight:
            loss = loss + next_weight * kl_next
        # order: cross-entropy of the true next position under softmax over the still-masked
        # positions of the sampler's confidence logits (the decode rule takes their argmax)
        score = confidence_logit(blk_logits).masked_fill(~masked, -float("inf"))
        ce = torch.nn.functional.cross_entropy(score[have], nxt[have], reduction="mean") if have.any() \
            else loss * 0
        if order_weight:
            loss = loss + order_weight * ce
        with torch.no_grad():
            bl = base_logits.float()[src].gather(1, bidx[..., None].expand(-1, -1, V))
            bl[..., mask_id] = -float("inf")
            kl0 = (kl_terms(torch.log_softmax(bl, -1), batch, tgt, tidx) * sel).sum() / n
            conf = lq.exp().amax(-1).masked_fill(~masked, -1.0)
            order = (conf.argmax(1) == nxt)[have].float().mean() if have.any() else torch.tensor(0.0)
        return loss, {"kl": float((kl * sel).sum().detach() / n), "kl_next": float(kl_next.detach()), "kl_marginal": float(kl0),
                      "order_ce": float(ce.detach()),
                      "order_acc": float(order),
                      "rows": float(row_ok.sum()) / max(J, 1)}

    return loss_fn
