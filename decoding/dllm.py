"""Baseline dLLM samplers, batched: LLaDA low-confidence semi-AR (the reference) and the
training-free parallel rules (Fast-dLLM threshold / factor, dParallel entropy) on one block loop.

Batches are left-padded; padding is excluded from attention and positions count from each
row's first real token, so a row decodes the same tokens alone or in a batch (temperature 0).

The block loop (`generate_blockwise`) is shared by every parallel decoder: it owns batching,
per-row NFE, the KV caches (`accel.decoding.cache`) and truncation; what to unmask is a
*policy* (`accel.decoding.policies`: the contract, `BlockState` in and `BlockDecision` out, and the
training-free rules), called once per forward.

Early exit (``early_exit=True``, the default of the threshold decoders): after each step a
row whose response contains an end token with no mask before it is treated as ended at that
token (masks after it become end tokens) — the same truncation, found without a policy. It
never changes a row's output (which stops at its first end token and tokens are never
remasked); it only saves forwards, as Fast-dLLM's implementation does. `generate_vanilla`
keeps LLaDA's exact schedule and has no early exit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from accel.decoding.cache import BlockCache, check_cache_mode
from accel.decoding.kernels import argmax_prob_entropy
from accel.decoding.policies import BlockState, Policy, confidence_policy, entropy_policy, most_confident, step_cap
from accel.models.backbone import BackboneError
from accel.models.masks import full_mask, position_ids


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
    if getattr(adapter, "extra", {}).get("block_causal") is False and len({len(p) for p in prompts}) > 1:
        # the load self-check found the model's code ignoring attention masks: padding would be attended
        raise BackboneError(f"{adapter.source}: this model's code ignores the attention mask, so prompts of "
                            "different lengths cannot share a batch (their padding would be attended); "
                            "decode one prompt per batch (accel bench: --batch-size 1; data generation: "
                            "its batch size key = 1)")
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
                     steps: int | None = None, temperature: float = 0.0, generator=None,
                     stop_when_ended: bool = False) -> DecodeResult:
    """LLaDA's low-confidence remasking sampler (docs/baselines.md), exactly.

    steps defaults to gen_len (one token per step). Confidence is the softmax probability of
    the (possibly Gumbel-noised) argmax; positions after the current block get -inf.

    stop_when_ended: stop once every row holds an end token with no mask before it; the rest
    become end tokens. Every row's output (up to its first end token) is bit-identical to the
    full schedule's, because until then each forward sees the same batch and canvases; only the
    forwards spent filling positions after every row's end are saved (the Learn2PD oracle and
    τ calibration need the outputs, not vanilla's NFE). NFE then counts the forwards run.
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
    answer_nfe = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
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
            answer_nfe = torch.where((answer_nfe == 0) & answer_complete(x, P, mask_id, adapter.eos_ids),
                                     nfe, answer_nfe)
            if stop_when_ended and bool((_first_free_end(x, P, mask_id, adapter.eos_ids) >= 0).all()):
                x[x == mask_id] = adapter.eos_ids[0]
                return finish(adapter, x, P, [nfe] * x.shape[0], answer_nfe=answer_nfe.tolist())
    answer_nfe = torch.where(answer_nfe == 0, nfe, answer_nfe)  # a row that decoded [MASK] itself
    return finish(adapter, x, P, [nfe] * x.shape[0], answer_nfe=answer_nfe.tolist())


# ------------------------------------------------------------------ the shared block loop
def token_stats(logits: torch.Tensor, temperature: float = 0.0, generator=None):
    """(x0, confidence, entropy) per position: the fused kernel on CUDA, the reference on CPU.

    At temperature > 0, x0 is LLaDA's Gumbel-noised argmax and confidence the (un-noised)
    softmax probability of that x0, as in `generate_vanilla`.
    """
    x0, conf, ent = argmax_prob_entropy(logits)
    if temperature:
        x0 = add_gumbel_noise(logits, temperature, generator).argmax(-1)
        p = torch.softmax(logits.float(), dim=-1)
        conf = torch.gather(p, -1, x0[..., None]).squeeze(-1)
    return x0, conf, ent


def _end_token_canvas(x, start, end_at, eos_ids, x0_at_end):
    """Apply truncation in place: x[r, end_at[r]] -> end token, later positions -> eos_ids[0]."""
    L = x.shape[1]
    idx = torch.arange(L, device=x.device)
    cut = end_at[:, None]
    after = (idx[None, :] > cut) & (cut >= start)
    x.masked_fill_(after, eos_ids[0])
    hit = end_at >= 0
    if hit.any():
        r = torch.nonzero(hit).flatten()
        at = end_at[r]
        keep = torch.isin(x0_at_end[r], torch.tensor(eos_ids, device=x.device))
        x[r, at] = torch.where(keep, x0_at_end[r], torch.full_like(at, eos_ids[0]))


def _first_free_end(x, P, mask_id, eos_ids) -> torch.Tensor:
    """[B] position of each row's first end token with no mask before it, else -1."""
    resp = x[:, P:]
    is_end = torch.isin(resp, torch.tensor(eos_ids, device=x.device))
    has = is_end.any(1)
    first = is_end.long().argmax(1)
    idx = torch.arange(resp.shape[1], device=x.device)
    masked_before = ((resp == mask_id) & (idx[None, :] < first[:, None])).any(1)
    return torch.where(has & ~masked_before, first + P, torch.full_like(first, -1))


def answer_complete(x: torch.Tensor, P: int, mask_id: int, eos_ids) -> torch.Tensor:
    """[B] bool: the row's answer (up to and including its first end token) holds no mask: what the
    row outputs can no longer change, so later forwards are not spent on the answer."""
    return (_first_free_end(x, P, mask_id, tuple(eos_ids)) >= 0) | ~(x[:, P:] == mask_id).any(1)


def end_free_rows(x: torch.Tensor, P: int, pending: torch.Tensor, eos_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """In place: a row whose first end token has nothing pending before it is finished, and its
    pending positions after that end become the first end id. ``pending`` [B, L] marks positions
    still to decode (the canvas' masks, or an explicit mask when the mask id may be a real token).
    Returns (done [B], filled [B, L]): the finished rows and the positions just filled."""
    resp, pend = x[:, P:], pending[:, P:]
    is_end = torch.isin(resp, torch.tensor(list(eos_ids), device=x.device)) & ~pend
    has = is_end.any(1)
    first = torch.where(has, is_end.long().argmax(1), torch.full_like(has, resp.shape[1], dtype=torch.long))
    idx = torch.arange(resp.shape[1], device=x.device)[None, :]
    done = has & ~(pend & (idx < first[:, None])).any(1)
    fill = done[:, None] & pend & (idx > first[:, None])
    resp[fill] = eos_ids[0]
    filled = torch.zeros_like(pending)
    filled[:, P:] = fill
    return done, filled


@torch.no_grad()
def generate_blockwise(adapter, prompts: list[list[int]], gen_len: int, block_len: int, policy: Policy,
                       cache: str | None = None, temperature: float = 0.0, generator=None,
                       early_exit: bool = True) -> DecodeResult:
    """Semi-AR block decoding with a pluggable unmask policy (contract: module docstring).

    All rows move block by block together; within a block a forward runs while any row still
    has masks there, and only those rows are forwarded and charged an NFE. cache: None,
    'prefix' or 'dual' (Fast-dLLM; the block's first forward is a full one that fills it).
    extra: forwards (batched calls), canvas_len (after any cropping), answer_nfe (per row: the NFE
    at which its answer held no mask, `answer_complete`).
    """
    if block_len <= 0 or gen_len <= 0 or gen_len % block_len:
        raise ValueError(f"gen_len ({gen_len}) must be a positive multiple of block_len ({block_len})")
    check_cache_mode(cache)
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    x, valid, P = init_canvas(adapter, prompts, gen_len)
    pos = position_ids(valid)
    B, L = x.shape
    mask_id, eos_ids = adapter.mask_id, tuple(adapter.eos_ids)
    nfe = torch.zeros(B, dtype=torch.long, device=x.device)
    answer_nfe = torch.zeros(B, dtype=torch.long, device=x.device)
    row_end = torch.full((B,), -1, dtype=torch.long, device=x.device)
    forwards = 0
    kv = BlockCache(adapter, cache)
    for b in range(gen_len // block_len):
        s, e = P + b * block_len, P + (b + 1) * block_len
        if s >= L:
            break
        step = 0
        while True:
            active = (x[:, s:e] == mask_id).any(1)
            if not active.any():
                break
            rows = torch.nonzero(active).flatten()
            blk_logits = kv.logits(x[:, :L], valid[:, :L], pos[:, :L], s, e, first=step == 0, rows=rows)
            forwards += 1
            nfe[rows] += 1
            blk_logits[..., mask_id] = -float("inf")  # [MASK] is never a prediction: guarantees progress
            cur = x[rows, s:e]
            masked = cur == mask_id
            x0, conf, ent = token_stats(blk_logits, temperature, generator)
            x0 = torch.where(masked, x0, cur)
            state = BlockState(logits=blk_logits, x0=x0, confidence=conf, entropy=ent, masked=masked, rows=rows,
                               x=x[:, :L], prompt_len=P, block_start=s, block_index=b, step_in_block=step)
            dec = policy(state)
            if dec.end_at is not None:  # truncate first: the progress guard then picks before the end
                end_at = dec.end_at.to(x.device).long()
                bad = (end_at != -1) & ((end_at < P) | (end_at >= L))
                if bad.any():
                    raise ValueError(f"policy returned end_at {end_at[bad].tolist()}: use -1 or a response "
                                     f"position in [{P}, {L})")
                in_blk = (end_at >= s) & (end_at < e)
                x0_end = torch.where(in_blk, x0.gather(1, (end_at - s).clamp(0, e - s - 1)[:, None]).squeeze(1),
                                     x[rows].gather(1, end_at.clamp(0, L - 1)[:, None]).squeeze(1))
                sub = x[rows]
                _end_token_canvas(sub, P, end_at, eos_ids, x0_end)
                x[rows] = sub
                row_end[rows] = torch.where(end_at >= 0, end_at, row_end[rows])
                cur = x[rows, s:e]
                masked = cur == mask_id
            transfer = dec.transfer & masked
            transfer |= most_confident(conf, masked) & ~transfer.any(1, keepdim=True)
            x[rows, s:e] = torch.where(transfer, x0, cur)
            if early_exit:
                free = _first_free_end(x[:, :L], P, mask_id, eos_ids)
                newly = (free >= 0) & (row_end < 0)
                if newly.any():
                    sub = x[:, :L]
                    _end_token_canvas(sub, P, torch.where(newly, free, -1), eos_ids, sub.gather(
                        1, free.clamp(min=0)[:, None]).squeeze(1))
                    row_end = torch.where(newly, free, row_end)
            answer_nfe = torch.where((answer_nfe == 0) & answer_complete(x[:, :L], P, mask_id, eos_ids),
                                     nfe, answer_nfe)
            if (row_end >= 0).all():
                last = int(row_end.max())
                new_L = max(e, P + -(-(last + 1 - P) // block_len) * block_len)
                if new_L < L:
                    kv.truncate(new_L, L)
                    L = new_L
            step += 1
    x[:, L:] = eos_ids[0]  # cropped tail: everything there is after every row's end
    answer_nfe = torch.where(answer_nfe == 0, nfe, answer_nfe)
    return finish(adapter, x, P, nfe.tolist(), forwards=forwards, canvas_len=L, answer_nfe=answer_nfe.tolist())


RULES = ("confidence", "entropy")


def generate_threshold(adapter, prompts: list[list[int]], gen_len: int = 256, block_len: int = 32,
                       threshold: float = 0.9, rule: str = "confidence", factor: float | None = None,
                       cache: str | None = None, temperature: float = 0.0, generator=None,
                       max_steps: int | None = None, early_exit: bool = True) -> DecodeResult:
    """Training-free parallel decoding: Fast-dLLM (confidence / factor) or dParallel (entropy).

    threshold > 1 with rule='confidence' unmasks one token per step (LLaDA's schedule with
    steps = gen_len). max_steps caps the forwards per block (the last one unmasks the rest).
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose 'confidence' or 'entropy'")
    if factor is not None and rule != "confidence":
        raise ValueError("factor only applies to rule='confidence'; drop factor or the entropy rule")
    if factor is not None and factor <= 0:
        raise ValueError(f"factor must be > 0 (got {factor})")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 (got {max_steps})")
    policy = confidence_policy(threshold, factor) if rule == "confidence" else entropy_policy(threshold)
    if max_steps is not None:
        policy = step_cap(policy, max_steps)
    return generate_blockwise(adapter, prompts, gen_len, block_len, policy, cache=cache, temperature=temperature,
                              generator=generator, early_exit=early_exit)
