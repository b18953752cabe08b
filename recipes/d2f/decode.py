"""D2F pipelined parallel decoding with an exact block KV cache (docs/recipes/d2f.md).

The response grows block by block. Each row keeps a list of added blocks (block 0 at the
start); after every forward, in every *active* block (added, with masks) the tokens with
confidence > tau_conf are unmasked, and a *fully activated* block (its predecessor's decoded
fraction >= tau_act; block 0 always) unmasks at least its most confident token. A new all-mask
block is added when the last block's decoded fraction >= tau_add and the row has decoded no
end token. So several blocks decode at once, each a little behind the one before it.

Exact KV cache. Attention is block-causal (`accel.models.masks.block_causal_mask`: the
prompt sees itself, each block sees the prompt, earlier blocks and itself), so the keys of a
finished block never change once every earlier block is finished: they are exact, not an
approximation as in Fast-dLLM. Shifted-logit models (the built-in, Dream) group hidden states by
the token they predict (`block_causal_mask(shift=True)`): the cache then ends one column before
the tail's first token, whose hidden state belongs to the tail. The batch keeps one cache for its unfinished rows: it holds the
prompt and the leading blocks that were finished in *every* unfinished row when they were last
fed (one forward of lag: a block's keys are kept from the forward that saw its final tokens).
Each forward feeds only the tail: from the first uncached block to the furthest added block
(rows that added fewer blocks feed mask blocks there, which block-causal attention keeps from
influencing anything earlier). Uncached mode (cache=False) feeds the whole canvas up to the
same tail end with the same mask, so both modes compute the same logits; at temperature 0 they
return identical tokens (tested).

Rows finish when their first end token has no mask before it (early exit; later positions
become end tokens) or when all gen_len // block_len blocks are added and decoded; finished rows
leave the batch (and the cache). Per-row NFE counts the forwards a row was part of.

Backbones: each family's forward (`accel.models.families`) takes the 4D boolean mask in its
own interface (LLaDA: as ``attention_bias``; Dream and HF-native models: ``attention_mask``).
A backbone without a usable KV cache (`adapter.supports_cache` false) decodes with cache=False:
the same tokens, more compute. LLaDA's published code refuses a cache, but accel computes LLaDA's
cached forward itself (`accel.models.families.llada_forward`); only a config that forward does not
compute, or whose cached logits fail the load-time self-check, decodes uncached. A model whose
code ignores the mask (an older LLaDA variant) is refused: the load-time self-check
(`accel.models.selfcheck`) records whether a block-causal mask is honoured.

Presets (`PRESETS`): the paper's per-task evaluation settings (block size, tau_add, tau_act,
tau_conf) and the built-in default used by `accel distill d2f`.
"""
from __future__ import annotations

import torch

from accel.decoding.dllm import DecodeResult, _first_free_end, finish, init_canvas, token_stats
from accel.models.backbone import BackboneError
from accel.models.families import get_family
from accel.models.kv import cache_kwargs, output_cache
from accel.models.masks import block_causal_mask, position_ids
from accel.recipes.d2f.kernels import block_update

PRESETS: dict[str, dict] = {
    "builtin": dict(block_len=8, tau_add=0.1, tau_act=0.95, tau_conf=0.9),
    "gsm8k": dict(block_len=32, tau_add=0.1, tau_act=0.95, tau_conf=0.9),
    "math": dict(block_len=16, tau_add=0.1, tau_act=0.95, tau_conf=0.9),
    "mbpp": dict(block_len=32, tau_add=0.3, tau_act=0.95, tau_conf=0.95),
    "humaneval": dict(block_len=32, tau_add=0.1, tau_act=0.95, tau_conf=0.9),
}
"""Decode settings by name: the paper's evaluation scripts (LLaDA/Dream) and the built-in default."""


def get_preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown D2F preset {name!r}; choose from: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def forward_logits(model, family: str, shift_logits: bool, ids, mask4d, pos, past_key_values=None,
                   use_cache: bool = False):
    """(logits aligned so [:, i] predicts token i, ForwardOut) under a 4D bool mask.

    `model` may be a peft/DDP wrapper; the family passes the mask the way its code takes it
    (`accel.models.families`) and returns the cache it filled.
    """
    out = get_family(family).forward(model, ids, mask4d, pos, past_key_values=past_key_values, use_cache=use_cache)
    logits = out.logits
    if shift_logits:
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    return logits, out


def require_block_causal(adapter) -> None:
    """D2F trains and decodes under a block-causal mask; a model whose code ignores the mask
    would silently decode with full attention, so it is refused (the load self-check measured it)."""
    if adapter.extra.get("block_causal", True) is False:
        raise BackboneError(f"{adapter.source}: this model's code ignores the attention mask (block 0's logits move "
                            "when a later block changes), so D2F's block-causal training and decoding cannot run "
                            "on it; use a model version whose code applies attention_bias, or dParallel/Learn2PD")


def check_params(gen_len: int, block_len: int, tau_add: float, tau_act: float, tau_conf: float) -> None:
    if block_len < 1 or gen_len < 1 or gen_len % block_len:
        raise ValueError(f"gen_len ({gen_len}) must be a positive multiple of block_len ({block_len})")
    for name, v in (("tau_add", tau_add), ("tau_act", tau_act), ("tau_conf", tau_conf)):
        if not 0 <= v <= 1:
            raise ValueError(f"{name}={v}: must be in [0, 1]")


def _narrow(kv, held: torch.Tensor, rows: torch.Tensor):
    """Keep only the cache's batch rows `rows` (a subset of the `held` canvas rows)."""
    if torch.equal(held, rows):
        return kv
    sel = torch.searchsorted(held, rows)
    for layer in kv.layers:
        layer.keys = layer.keys.index_select(0, sel)
        layer.values = layer.values.index_select(0, sel)
    return kv


@torch.no_grad()
def generate_d2f(adapter, prompts: list[list[int]], gen_len: int = 256, block_len: int = 16, tau_add: float = 0.1,
                 tau_act: float = 0.95, tau_conf: float = 0.9, cache: bool = True, temperature: float = 0.0,
                 generator=None, early_exit: bool = True) -> DecodeResult:
    """Pipelined parallel decoding of a (D2F-distilled) dLLM; contract in the module docstring.

    extra: forwards (batched calls), tokens_fed (query tokens summed over forwards and rows),
    max_blocks (most blocks decoding at once in any row), cache.
    """
    check_params(gen_len, block_len, tau_add, tau_act, tau_conf)
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    require_block_causal(adapter)
    if cache and not adapter.supports_cache:
        cache = False  # the family's code has no KV cache (module docstring)
    x, valid, P = init_canvas(adapter, prompts, gen_len)
    pos = position_ids(valid)
    B, dev = x.shape[0], x.device
    NBmax, blk = gen_len // block_len, block_len
    mask_id, eos_ids = adapter.mask_id, tuple(adapter.eos_ids)
    eos_t = torch.tensor(eos_ids, device=dev)
    shift = 1 if adapter.shift_logits else 0
    n_added = torch.ones(B, dtype=torch.long, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    nfe = torch.zeros(B, dtype=torch.long, device=dev)
    kv, kv_rows, kv_len = None, None, 0
    forwards = fed = max_active = 0
    while not bool(done.all()):
        rows = torch.nonzero(~done).flatten()
        R = rows.numel()
        xr, na = x[rows], n_added[rows]
        fin = ~(xr[:, P:].view(R, NBmax, blk) == mask_id).any(-1)
        lead = fin.long().cumprod(1).sum(1)
        c = int(torch.minimum(lead, na - 1).min())  # first block fed as tail (all before are finished)
        nb_end = int(na.max())
        ts, we = P + c * blk, P + nb_end * blk
        if cache and kv is not None:
            kv = _narrow(kv, kv_rows, rows)
        ws = kv_len if cache else 0
        mask = block_causal_mask(valid[rows, :we], P, blk, q_start=ws, shift=bool(shift))
        logits, out = forward_logits(adapter.model, adapter.family, adapter.shift_logits, xr[:, ws:we], mask,
                                     pos[rows, ws:we], past_key_values=kv if cache else None, use_cache=cache)
        forwards += 1
        fed += R * (we - ws)
        nfe[rows] += 1
        if cache:
            kv, kv_rows, kv_len = output_cache(out), rows, ts - shift
            if we > kv_len:  # keep blocks < c: finished in every row when fed, so their keys are final
                kv.crop(kv_len - we)
        tail = logits[:, ts - ws:we - ws].float()
        tail[..., mask_id] = -float("inf")  # [MASK] is never a prediction
        if tail.shape[-1] > adapter.n_tokens:
            tail[..., adapter.n_tokens:] = -float("inf")  # padded vocabulary rows are no token
        x0, conf, _ = token_stats(tail, temperature, generator)
        cur = xr[:, ts:we]
        masked = cur == mask_id
        x0 = torch.where(masked, x0, cur)
        NB = nb_end - c
        transfer, _frac, state, add = block_update(conf.view(R, NB, blk), masked.view(R, NB, blk),
                                                   torch.isin(x0, eos_t).view(R, NB, blk), na - c,
                                                   tau_conf, tau_act, tau_add)
        max_active = max(max_active, int((state > 0).sum(1).max()))
        xr[:, ts:we] = torch.where(transfer.view(R, -1), x0, cur)
        na = torch.clamp(na + add.long(), max=NBmax)
        resp = xr[:, P:]
        if early_exit:
            free = _first_free_end(xr, P, mask_id, eos_ids)
            ended = free >= 0
            if ended.any():
                idx = torch.arange(xr.shape[1], device=dev)
                xr.masked_fill_(ended[:, None] & (idx[None, :] > free[:, None]), eos_ids[0])
        added_pos = torch.arange(gen_len, device=dev)[None, :] < (na * blk)[:, None]
        settled = ~((resp == mask_id) & added_pos).any(1)
        has_end = torch.isin(resp, eos_t).any(1)
        row_done = settled & (has_end | (na == NBmax))
        if early_exit:
            row_done |= ended
        x[rows], n_added[rows], done[rows] = xr, na, row_done
    return finish(adapter, x, P, nfe.tolist(), forwards=forwards, tokens_fed=fed, max_blocks=max_active,
                  cache=bool(cache))
