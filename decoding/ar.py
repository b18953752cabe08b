"""AR decoding baselines: greedy and temperature sampling with the model's own KV cache, batched.

Left padding with explicit position ids, so each row decodes as it would alone.
"""
from __future__ import annotations

import functools
import inspect

import torch

from accel.decoding.dllm import DecodeResult, left_pad, trim_at_end
from accel.decoding.stop import StopStrings
from accel.models.masks import position_ids
from accel.models.kv import cache_kwargs, output_cache


@torch.no_grad()
def generate_greedy(adapter, prompts: list[list[int]], max_new_tokens: int = 64, temperature: float = 0.0,
                    top_p: float = 1.0, generator=None, stop: StopStrings | None = None) -> DecodeResult:
    """Greedy (T=0) or sampled decoding; stops when every row has emitted an end token (or, with `stop`,
    the token that completes one of its stop strings).

    NFE per row = forwards until that row ended (the prefill counts as one).
    """
    model = adapter.model
    keep = {"logits_to_keep": 1} if _takes(type(model), "logits_to_keep") else {}

    def step(cur, attn, pos, past):
        # only the last position's logits: the prefill would otherwise project every prompt token
        o = model(input_ids=cur, attention_mask=attn, position_ids=pos, use_cache=True, **keep,
                  **cache_kwargs(model, past))
        return o.logits[:, -1].float(), output_cache(o)

    def choose(logits):
        if temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / temperature, -1)
        if top_p < 1.0:
            sp, si = probs.sort(-1, descending=True)
            keep = sp.cumsum(-1) - sp < top_p
            probs = torch.zeros_like(probs).scatter(-1, si, sp * keep)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    rows, nfe = decode_loop(adapter, prompts, max_new_tokens, step, choose, stop=stop)
    texts = [adapter.tokenizer.decode([x for x in r if x not in adapter.eos_ids]) for r in rows]
    return DecodeResult(tokens=rows, nfe=nfe, texts=texts)


@functools.lru_cache(maxsize=None)
def _takes(cls, name: str) -> bool:
    """Whether `cls.forward` accepts keyword `name` (remote-code models may predate `logits_to_keep`)."""
    try:
        return name in inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def decode_loop(adapter, prompts: list[list[int]], max_new_tokens: int, step, choose=None,
                stop: StopStrings | None = None):
    """The batched KV-cache loop of AR decoding: left-padded prompts, one token per row per forward
    until every row has emitted an end token or completed one of its `stop` strings (rows that ended get pad).

    `step(cur, attn, pos, past)` runs the model on the new tokens and returns (the last position's
    logits [B, V] as float, the cache); `choose(logits)` picks the next ids (default: greedy).
    Returns (rows up to and including their first end token, forwards per row until it ended).
    """
    ids, valid = left_pad(prompts, adapter.pad_id, adapter.device)
    B = ids.shape[0]
    if bool(valid.all()):
        return _unpadded_loop(adapter, ids, max_new_tokens, step, choose, stop)
    eos = torch.tensor(adapter.eos_ids, device=ids.device)
    out = torch.full((B, max_new_tokens), adapter.pad_id, dtype=torch.long, device=ids.device)
    done = torch.zeros(B, dtype=torch.bool, device=ids.device)
    nfe = torch.zeros(B, dtype=torch.long)
    # the attention mask grows by a column per step: one buffer, a view of its first columns each step
    P = ids.shape[1]
    attn_buf = torch.ones((B, P + max_new_tokens), dtype=torch.long, device=ids.device)
    attn_buf[:, :P] = valid.long()
    attn, pos, past, cur = attn_buf[:, :P], position_ids(valid), None, ids
    so_far: list[list[int]] = [[] for _ in range(B)]  # with `stop`: the rows as ints, for the check
    stopped: dict[int, int] = {}  # row -> its length where a stop string completed
    for t in range(max_new_tokens):
        logits, past = step(cur, attn, pos, past)
        nfe += (~done).long().cpu()
        nxt = choose(logits) if choose is not None else logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, adapter.pad_id), nxt)
        out[:, t] = nxt
        done |= torch.isin(nxt, eos)
        if stop is not None:
            for b, v in enumerate(nxt.tolist()):
                if b in stopped:
                    continue
                so_far[b].append(v)
                if not done[b] and stop.first(b, so_far[b], t) is not None:
                    stopped[b], done[b] = t + 1, True
        if bool(done.all()):
            break
        cur = nxt[:, None]
        attn = attn_buf[:, :P + t + 1]
        pos = pos[:, -1:] + 1
    return [trim_at_end(r[:stopped.get(b, len(r))], adapter.eos_ids) for b, r in enumerate(out.tolist())], nfe.tolist()


def _unpadded_loop(adapter, ids: torch.Tensor, max_new_tokens: int, step, choose=None, stop=None):
    """`decode_loop` when no prompt is padded (batch 1, or equal lengths): the model gets no attention
    mask and no position ids (it derives both from its cache, as a bare `model(input_ids, cache)` loop
    does), and the ids are read back once per step, as Python ints, for the end test."""
    B = ids.shape[0]
    eos = set(adapter.eos_ids)
    rows: list[list[int]] = [[] for _ in range(B)]
    nfe = [0] * B
    live = list(range(B))
    past, cur = None, ids
    pad = torch.tensor(adapter.pad_id, device=ids.device)
    finished = torch.zeros(B, dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        logits, past = step(cur, None, None, past)
        nxt = choose(logits) if choose is not None else logits.argmax(-1)
        if B > 1:
            nxt = torch.where(finished, pad, nxt)  # a finished row keeps decoding pad, as with padding
        vals = nxt.tolist()
        still = []
        for b in live:
            rows[b].append(vals[b])
            nfe[b] += 1
            if vals[b] in eos or (stop is not None and stop.first(b, rows[b], len(rows[b]) - 1) is not None):
                finished[b] = True
            else:
                still.append(b)
        live = still
        if not live:
            break
        cur = nxt[:, None]
    return rows, nfe
