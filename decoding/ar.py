"""AR decoding baselines: greedy and temperature sampling with the model's own KV cache, batched.

Left padding with explicit position ids, so each row decodes as it would alone.
"""
from __future__ import annotations

import torch

from accel.decoding.dllm import DecodeResult, left_pad, trim_at_end
from accel.models.masks import position_ids
from accel.models.kv import cache_kwargs, output_cache


@torch.no_grad()
def generate_greedy(adapter, prompts: list[list[int]], max_new_tokens: int = 64, temperature: float = 0.0,
                    top_p: float = 1.0, generator=None) -> DecodeResult:
    """Greedy (T=0) or sampled decoding; stops when every row has emitted an end token.

    NFE per row = forwards until that row ended (the prefill counts as one).
    """
    model = adapter.model

    def step(cur, attn, pos, past):
        o = model(input_ids=cur, attention_mask=attn, position_ids=pos, use_cache=True, **cache_kwargs(model, past))
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

    rows, nfe = decode_loop(adapter, prompts, max_new_tokens, step, choose)
    texts = [adapter.tokenizer.decode([x for x in r if x not in adapter.eos_ids]) for r in rows]
    return DecodeResult(tokens=rows, nfe=nfe, texts=texts)


@torch.no_grad()
def decode_loop(adapter, prompts: list[list[int]], max_new_tokens: int, step, choose=None):
    """The batched KV-cache loop of AR decoding: left-padded prompts, one token per row per forward
    until every row has emitted an end token (rows that ended get pad).

    `step(cur, attn, pos, past)` runs the model on the new tokens and returns (the last position's
    logits [B, V] as float, the cache); `choose(logits)` picks the next ids (default: greedy).
    Returns (rows up to and including their first end token, forwards per row until it ended).
    """
    ids, valid = left_pad(prompts, adapter.pad_id, adapter.device)
    B = ids.shape[0]
    eos = torch.tensor(adapter.eos_ids, device=ids.device)
    out = torch.full((B, max_new_tokens), adapter.pad_id, dtype=torch.long, device=ids.device)
    done = torch.zeros(B, dtype=torch.bool, device=ids.device)
    nfe = torch.zeros(B, dtype=torch.long)
    attn, pos, past, cur = valid.long(), position_ids(valid), None, ids
    for t in range(max_new_tokens):
        logits, past = step(cur, attn, pos, past)
        nfe += (~done).long().cpu()
        nxt = choose(logits) if choose is not None else logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, adapter.pad_id), nxt)
        out[:, t] = nxt
        done |= torch.isin(nxt, eos)
        if bool(done.all()):
            break
        cur = nxt[:, None]
        attn = torch.cat([attn, torch.ones((B, 1), dtype=attn.dtype, device=attn.device)], 1)
        pos = pos[:, -1:] + 1
    return [trim_at_end(r, adapter.eos_ids) for r in out.tolist()], nfe.tolist()
