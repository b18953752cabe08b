"""Baseline dLLM samplers: LLaDA low-confidence semi-AR (the reference), batched.

Batches are left-padded; padding is excluded from attention and positions count from each
row's first real token, so a row decodes the same tokens alone or in a batch (temperature 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from accel.decoding.masks import full_mask, position_ids


@dataclass
class DecodeResult:
    """Generated ids per row (up to and including the first end token) and per-row NFE."""
    tokens: list[list[int]]
    nfe: list[int]
    texts: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def left_pad(prompts: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, P] ids and validity mask, prompts right-aligned."""
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros((len(prompts), P), dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.tensor(p, dtype=torch.long)
        valid[i, P - len(p):] = True
    return ids, valid


def trim_at_end(row: list[int], eos_ids, mask_id=None) -> list[int]:
    """Generated tokens up to and including the first end token (what counts as output)."""
    out = []
    for t in row:
        out.append(t)
        if t in eos_ids:
            break
    return out


def num_transfer_tokens(block_mask: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, steps]: mask_count // steps each step, remainder one extra to the earliest steps."""
    count = block_mask.sum(dim=1, keepdim=True)
    base, rem = count // steps, count % steps
    out = base.expand(-1, steps).clone()
    out += (torch.arange(steps, device=block_mask.device)[None, :] < rem).long()
    return out


def add_gumbel_noise(logits: torch.Tensor, temperature: float, generator=None) -> torch.Tensor:
    """LLaDA's Gumbel-max in float64: exp(logits) / (-log u)^T; identity at T=0."""
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    u = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
    return logits.exp() / (-torch.log(u)) ** temperature


def init_canvas(adapter, prompts: list[list[int]], gen_len: int):
    """Left-padded prompt followed by gen_len masks; returns (x, valid, prompt_len)."""
    ids, valid = left_pad(prompts, adapter.pad_id, adapter.device)
    B, P = ids.shape
    x = torch.cat([ids, torch.full((B, gen_len), adapter.mask_id, dtype=torch.long, device=ids.device)], 1)
    valid = torch.cat([valid, torch.ones((B, gen_len), dtype=torch.bool, device=ids.device)], 1)
    return x, valid, P


def finish(adapter, x: torch.Tensor, prompt_len: int, nfe: list[int], **extra) -> DecodeResult:
    rows = [trim_at_end(r, adapter.eos_ids) for r in x[:, prompt_len:].tolist()]
    texts = [adapter.tokenizer.decode([t for t in r if t not in adapter.eos_ids and t != adapter.mask_id])
             for r in rows]
    return DecodeResult(tokens=rows, nfe=nfe, texts=texts, extra=extra)


@torch.no_grad()
def generate_vanilla(adapter, prompts: list[list[int]], gen_len: int = 64, block_len: int = 32,
                     steps: int | None = None, temperature: float = 0.0, generator=None) -> DecodeResult:
    """LLaDA's low-confidence remasking sampler (ALGORITHMS.md), exactly.

    steps defaults to gen_len (one token per step). Confidence is the softmax probability of
    the (possibly Gumbel-noised) argmax; positions after the current block get -inf.
    """
    steps = gen_len if steps is None else steps
    if gen_len % block_len:
        raise ValueError(f"gen_len ({gen_len}) must be a multiple of block_len ({block_len})")
    n_blocks = gen_len // block_len
    if steps % n_blocks:
        raise ValueError(f"steps ({steps}) must be a multiple of the number of blocks ({n_blocks})")
    spb = steps // n_blocks
    x, valid, P = init_canvas(adapter, prompts, gen_len)
    attn, pos = full_mask(valid), position_ids(valid)
    mask_id = adapter.mask_id
    nfe = 0
    for b in range(n_blocks):
        s, e = P + b * block_len, P + (b + 1) * block_len
        ntt = num_transfer_tokens(x[:, s:e] == mask_id, spb)
        for i in range(spb):
            mask_index = x == mask_id
            logits, _ = adapter.dllm_logits(x, attn, pos)
            nfe += 1
            x0 = add_gumbel_noise(logits, temperature, generator).argmax(-1)
            p = torch.softmax(logits.to(torch.float64), dim=-1)
            x0_p = torch.gather(p, -1, x0[..., None]).squeeze(-1)
            x0_p[:, e:] = -float("inf")
            x0 = torch.where(mask_index, x0, x)
            conf = torch.where(mask_index, x0_p, torch.tensor(-float("inf"), dtype=x0_p.dtype, device=x.device))
            transfer = torch.zeros_like(mask_index)
            for j in range(x.shape[0]):
                k = int(ntt[j, i])
                if k:
                    transfer[j, torch.topk(conf[j], k=k).indices] = True
            x[transfer] = x0[transfer]
    return finish(adapter, x, P, [nfe] * x.shape[0])
