"""Batch building shared by the teacher build and the recipes: tokenize pairs, pad, label.

Collators here are deterministic (no RNG): masking belongs in the loss, where the trainer
reseeds per step, so a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import torch

from accel.data.tokenizer import chat_prompt_ids


def tokenize_examples(tok, examples):
    """[(prompt_ids in chat format, response_ids)] for dicts with "prompt" and "response".

    A line that carries ``response_ids`` (what `accel data self-distill` writes) keeps them: the
    tokens the base generated, which re-tokenizing the decoded text does not always give back."""
    out = []
    for ex in examples:
        p = chat_prompt_ids(tok, ex["prompt"])
        ids = ex.get("response_ids")
        if isinstance(ids, list) and all(isinstance(t, int) for t in ids):
            r = list(ids)
        else:
            r = tok(ex["response"], add_special_tokens=False)["input_ids"]
        out.append((p, r))
    return out


def ar_batch(pairs, tok):
    """Left-padded prompt + response + eos; labels -100 except on the response and its eos."""
    seqs = [p + r + [tok.eos_token_id] for p, r in pairs]
    L = max(len(s) for s in seqs)
    B = len(seqs)
    ids = torch.full((B, L), tok.pad_token_id, dtype=torch.long)
    valid = torch.zeros((B, L), dtype=torch.bool)
    labels = torch.full((B, L), -100, dtype=torch.long)
    for i, ((p, r), s) in enumerate(zip(pairs, seqs)):
        ids[i, L - len(s):] = torch.tensor(s)
        valid[i, L - len(s):] = True
        labels[i, L - len(s) + len(p):] = torch.tensor(r + [tok.eos_token_id])
    return ids, valid, labels


def dllm_batch(pairs, pad_id: int, eos_id: int, resp_len: int):
    """Left-padded prompts, then a response window of `resp_len` (response + eos padding, truncated).

    Returns (ids, valid, resp) [B, P + resp_len]: the clean sequence, the non-padding mask and
    the response-window mask (where the masked-diffusion loss applies). Padding the response
    with end tokens is how LLaDA's SFT teaches a dLLM to stop.
    """
    P = max(len(p) for p, _ in pairs)
    B = len(pairs)
    ids = torch.full((B, P + resp_len), pad_id, dtype=torch.long)
    valid = torch.zeros((B, P + resp_len), dtype=torch.bool)
    resp = torch.zeros((B, P + resp_len), dtype=torch.bool)
    for i, (p, r) in enumerate(pairs):
        r = (list(r) + [eos_id] * resp_len)[:resp_len]
        ids[i, P - len(p):P] = torch.tensor(p)
        ids[i, P:] = torch.tensor(r)
        valid[i, P - len(p):] = True
        resp[i, P:] = True
    return ids, valid, resp
