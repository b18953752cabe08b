"""dParallel's certainty-forcing loss (docs/recipes/dparallel.md), on teacher trajectories.

Per row: pick a response block k uniformly; blocks before k are clean context, block k is
masked i.i.d. with p = mask_prob (m), every later block is all [MASK] and carries no loss
(the semi-AR decoding state the student will see). A second forward uses the complementary
mask m̄ = block k \\ m, so every position of block k is supervised exactly once per step.

    L = CE_m + CE_m̄ + λ·(H_m + H_m̄)

CE is the mean cross-entropy over the masked positions against the trajectory tokens; H is
the mean entropy of softmax(logits / T) over the masked positions whose argmax already equals
the label. Minimising H only where the student is already right is what makes tokens certain
early (so an entropy threshold unmasks many per step) without reinforcing wrong guesses.
Both forwards run as one batch of 2B rows. Logits follow the adapter's alignment (Dream's
shifted logits are realigned), and the mask token is the adapter's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from accel.models.families import get_family
from accel.models.masks import full_mask, position_ids


def default_entropy_weight(family: str) -> float:
    """λ: 1 for the Dream family, 2 for LLaDA-like models (the built-in dLLM included)."""
    return 1.0 if family == "dream" else 2.0


def block_masks(batch: int, gen_len: int, block_len: int, mask_prob: float, device=None, generator=None,
                canvas_len: int | None = None):
    """(k [B], m [B, C], m̄ [B, C], later [B, C]) over a response canvas of C = canvas_len (default gen_len).

    k is drawn over the gen_len trajectory's blocks; m and m̄ partition block k of each row;
    `later` marks every position after block k, including the canvas beyond gen_len.
    """
    C = gen_len if canvas_len is None else canvas_len
    nb = gen_len // block_len
    k = torch.randint(nb, (batch,), device=device, generator=generator)
    blk = torch.arange(C, device=device) // block_len
    in_k = blk[None, :] == k[:, None]
    later = blk[None, :] > k[:, None]
    draw = torch.rand(batch, C, device=device, generator=generator) < mask_prob
    return k, in_k & draw, in_k & ~draw, later


def masked_entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Entropy (nats) of softmax(logits / T) per row of [N, V] logits."""
    logp = F.log_softmax(logits / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def term(logits: torch.Tensor, labels: torch.Tensor, sel: torch.Tensor, temperature: float):
    """(CE, H, n_correct, n_masked) for one mask: logits [B, G, V], labels/sel [B, G]."""
    lg = logits[sel].float()
    lb = labels[sel]
    if lg.shape[0] == 0:
        zero = logits.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
        return zero, zero, 0, 0
    ce = F.cross_entropy(lg, lb)
    correct = lg.argmax(-1) == lb
    if correct.any():
        h = masked_entropy(lg[correct], temperature).mean()
    else:
        h = lg.sum() * 0.0
    return ce, h, int(correct.sum()), int(lg.shape[0])


def certainty_forcing(logits_m, logits_mbar, labels, m, mbar, lam: float, temperature: float = 0.5):
    """The loss and its parts from the two forwards' response logits ([B, G, V] each)."""
    ce_m, h_m, c_m, n_m = term(logits_m, labels, m, temperature)
    ce_b, h_b, c_b, n_b = term(logits_mbar, labels, mbar, temperature)
    loss = ce_m + ce_b + lam * (h_m + h_b)
    n = n_m + n_b
    metrics = {"ce": float(ce_m.detach() + ce_b.detach()) / 2, "entropy": float(h_m.detach() + h_b.detach()) / 2,
               "correct_frac": (c_m + c_b) / n if n else 0.0, "masked": float(n)}
    return loss, metrics


def aligned_logits(model, shift_logits: bool, ids, attention_mask, position_ids, family: str = "causal-lm"):
    """Forward a (possibly wrapped) dLLM in its family's interface (`accel.models.families`);
    logits[:, i] predicts token i (Dream realigned)."""
    logits = get_family(family).forward(model, ids, attention_mask, position_ids).logits
    if shift_logits:
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    return logits


def make_loss(adapter, block_len: int, mask_prob: float = 0.5, lam: float | None = None, temperature: float = 0.5,
              gen_len: int | None = None, canvas_lens: list[int] | tuple = ()):
    """loss_fn(model, batch) for `fit`; batch = {ids, valid, resp} from `make_collator`.

    gen_len: the trajectory length (block k is drawn among its blocks; default: the batch's
    response window). canvas_lens: per step, the response canvas is cropped to one of these
    lengths drawn uniformly (positions past the trajectory are end tokens, always [MASK] in
    the input), so the student sees the canvas sizes it will decode with (e.g. gen 256)
    while the loss stays on the blocks that hold the answer.
    """
    lam = default_entropy_weight(adapter.family) if lam is None else lam
    mask_id, shift = adapter.mask_id, adapter.shift_logits

    def loss_fn(model, batch):
        ids, valid, resp = batch["ids"], batch["valid"], batch["resp"]
        B, L = ids.shape
        W = int(resp[0].sum())
        P = L - W
        G = gen_len or W
        C = W
        if canvas_lens:
            C = min(W, int(canvas_lens[int(torch.randint(len(canvas_lens), ()))]))
            ids, valid = ids[:, :P + C], valid[:, :P + C]
        _, m, mbar, later = block_masks(B, min(G, C), block_len, mask_prob, device=ids.device, canvas_len=C)
        resp_ids = ids[:, P:]
        inp = torch.cat([ids, ids])
        inp[:, P:] = torch.where(torch.cat([m | later, mbar | later]), mask_id, inp[:, P:])
        v2 = torch.cat([valid, valid])
        logits = aligned_logits(model, shift, inp, full_mask(v2), position_ids(v2), adapter.family)[:, P:]
        loss, metrics = certainty_forcing(logits[:B], logits[B:], resp_ids, m, mbar, lam, temperature)
        metrics["canvas_len"] = float(C)
        return loss, metrics

    return loss_fn


from accel.recipes.shared.lora_distill import trajectory_collator as make_collator  # noqa: E402,F401 (the batch layout)
