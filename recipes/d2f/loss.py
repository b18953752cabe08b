"""D2F's asymmetric distillation loss (docs/recipes/d2f.md).

One noisy sequence (`noise.noise_mask`: per-block ratios rising left to right), two passes
over the same weights: the *student* (base + LoRA) under block-causal attention, the *teacher*
(the adapter disabled through peft's ``disable_adapter()``, no grad) under full bidirectional
attention (for shifted-logit models grouped by predicted token, `block_causal_mask(shift=True)`,
exactly as the decoder). Over masked positions the student matches the teacher's distribution:
CE(student, softmax(teacher)) = KL(teacher || student) + H(teacher), each position divided by
its block's mask ratio (the masked-diffusion ELBO weight) and summed over the batch's response
positions, so the loss is an unbiased per-position mean. The student thus learns to predict
with only the prompt, earlier blocks and its own block visible — what the pipelined decoder
and its exact KV cache give it — from a teacher that saw everything.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from accel.models.masks import block_causal_mask, full_mask, position_ids
from accel.recipes.d2f.decode import forward_logits
from accel.recipes.d2f.noise import noise_mask
from accel.trainers.trainer import unwrap


def distill_loss(student_logits, teacher_logits, masked, ratio):
    """(loss, metrics) from response logits [B, W, V], masked/ratio [B, W]."""
    B, W = masked.shape
    s = student_logits[masked].float()
    t = teacher_logits[masked].float().detach()
    if s.shape[0] == 0:
        zero = student_logits.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
        return zero, {"ce": 0.0, "kl": 0.0, "agree": 0.0, "masked_frac": 0.0}
    logp_s = F.log_softmax(s, -1)
    logp_t = F.log_softmax(t, -1)
    p_t = logp_t.exp()
    ce = -(p_t * logp_s).sum(-1)
    loss = (ce / ratio[masked]).sum() / (B * W)
    h_t = -(p_t * logp_t).sum(-1)
    metrics = {"ce": float(ce.detach().mean()), "kl": float((ce.detach() - h_t).mean()),
               "agree": float((s.argmax(-1) == t.argmax(-1)).float().mean()),
               "masked_frac": float(masked.float().mean())}
    return loss, metrics


def make_loss(adapter, block_len: int, min_ratio: float = 0.2, max_ratio: float = 0.7):
    """loss_fn(model, batch) for `fit`; batch = {ids, valid, resp} (dParallel's collator).

    `model` is the peft model (possibly inside a DDP/DeepSpeed wrapper); the teacher pass runs
    on the unwrapped peft model with its adapter disabled.
    """
    mask_id, shift, family = adapter.mask_id, adapter.shift_logits, adapter.family

    def loss_fn(model, batch):
        ids, valid, resp = batch["ids"], batch["valid"], batch["resp"]
        B, L = ids.shape
        W = int(resp[0].sum())
        P = L - W
        masked, ratio = noise_mask(B, W, block_len, min_ratio, max_ratio, device=ids.device)
        inp = ids.clone()
        inp[:, P:] = torch.where(masked, torch.full_like(ids[:, P:], mask_id), ids[:, P:])
        pos = position_ids(valid)
        student, _ = forward_logits(model, family, shift, inp, block_causal_mask(valid, P, block_len, shift=shift), pos)
        peft_model = unwrap(model)
        with torch.no_grad(), peft_model.disable_adapter():
            teacher, _ = forward_logits(peft_model, family, shift, inp, full_mask(valid), pos)
        return distill_loss(student[:, P:], teacher[:, P:], masked, ratio)

    return loss_fn
