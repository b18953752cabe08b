"""Fast-dLLM approximate KV caches for the block loop: none, prefix, dual.

A bidirectional dLLM has no exact KV cache: every key depends on every other token. Fast-dLLM
reuses KV anyway, because tokens outside the current block change little while it decodes:

- ``prefix``: at each block start run the full sequence (that forward is also the block's first
  step), keep the KV of the positions before the block, and per later step feed only the block
  and everything after it;
- ``dual``: also keep the KV of the positions after the block, and feed only the block.

How it is done with HF's ``DynamicCache`` (transformers 5.x): RoPE is applied before keys are
cached (they carry their own ``position_ids``), and with an explicit 4D mask attention does not
care about the order of the keys. So the cache simply holds ``[prefix | suffix]`` keys, the
block is fed as new tokens with its true position ids and a mask over (cache keys + block
keys) in that order, and after each step ``crop`` drops the block's keys again. Padding keys
stay masked because the key-validity vector travels in the same order.

Shifted-logit models (Dream: ``logits[i-1]`` predicts token ``i``) need the output at the
position just before the block, so for them the fed window starts one position earlier and
that position is not kept in the prefix cache.
"""
from __future__ import annotations

import torch

from accel.models.backbone import BackboneError
from accel.models.kv import output_cache
from accel.models.masks import full_mask

CACHE_MODES = (None, "prefix", "dual")


def check_cache_mode(cache) -> None:
    if cache not in CACHE_MODES:
        raise ValueError(f"unknown cache mode {cache!r}; choose none, 'prefix' or 'dual'")


class BlockCache:
    """Per-block KV reuse for one batch; `logits` returns aligned logits of the block only."""

    def __init__(self, adapter, mode: str | None = None):
        check_cache_mode(mode)
        if mode is not None and not getattr(adapter, "supports_cache", True):
            raise BackboneError(f"{adapter.source}: its model code ({adapter.family}) has no KV cache, so cache={mode!r} "
                                "cannot run; decode without a cache")
        self.adapter, self.mode = adapter, mode
        self.kv = None
        self.kv_valid = None  # [rows, cached keys] validity, in cache order
        self.rows = None  # canvas rows the cache holds (None: all)
        self.shift = 1 if adapter.shift_logits else 0

    def logits(self, x: torch.Tensor, valid: torch.Tensor, pos: torch.Tensor, s: int, e: int,
               first: bool, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [len(rows), e - s, V] for block [s, e) of canvas x [B, L], rows `rows` only.

        first=True marks the block's first step: a full forward that (re)builds the cache.
        Without a cache mode every call is a full forward. Rows may only drop out within a
        block (a finished block stays finished), so the cache is narrowed, never widened.
        """
        if rows is not None and rows.numel() == x.shape[0]:
            rows = None  # every row: skip the gathers
        if rows is not None:
            x, valid, pos = x[rows], valid[rows], pos[rows]
        if self.mode is None or first:
            use = self.mode is not None
            logits, out = self.adapter.dllm_logits(x, full_mask(valid), pos, use_cache=use)
            if use:
                self._keep(output_cache(out), valid, s, e)
                self.rows = rows
            return logits[:, s:e]
        self._narrow(rows)
        return self._cached(x, valid, pos, s, e)

    def _narrow(self, rows: torch.Tensor | None) -> None:
        """Select the cache's batch rows down to `rows` (batch indices into the canvas)."""
        held = self.rows
        if rows is None or (held is not None and torch.equal(held, rows)):
            return
        if held is None:
            sel = rows
        else:  # rows is a subset of held: positions of rows inside held
            sel = torch.searchsorted(held, rows)
        for layer in self.kv.layers:
            layer.keys = layer.keys.index_select(0, sel)
            layer.values = layer.values.index_select(0, sel)
        self.kv_valid = self.kv_valid.index_select(0, sel)
        self.rows = rows

    def _window(self, s: int, e: int, L: int) -> tuple[int, int]:
        ws = s - self.shift
        return ws, (L if self.mode == "prefix" else e)

    def _keep(self, kv, valid: torch.Tensor, s: int, e: int) -> None:
        """Keep the KV of positions outside the fed window: [0, ws) (+ [e, L) for dual)."""
        L = valid.shape[1]
        ws, we = self._window(s, e, L)
        if ws < 0:
            raise ValueError("a KV-cached block needs at least one token before it (empty prompt?)")
        keep = torch.cat([torch.arange(0, ws), torch.arange(we, L)]).to(valid.device)
        for layer in kv.layers:
            layer.keys = layer.keys.index_select(-2, keep)
            layer.values = layer.values.index_select(-2, keep)
        self.kv, self.kv_valid = kv, valid[:, keep]

    def _cached(self, x, valid, pos, s, e):
        L = x.shape[1]
        ws, we = self._window(s, e, L)
        key_valid = torch.cat([self.kv_valid, valid[:, ws:we]], 1)
        n = we - ws
        logits, _ = self.adapter.dllm_logits(x[:, ws:we], full_mask(key_valid, n), pos[:, ws:we],
                                             past_key_values=self.kv, use_cache=True)
        self.kv.crop(-n)  # drop the fed window's keys: the cache is [prefix | suffix] again
        return logits[:, self.shift:self.shift + (e - s)]

    def truncate(self, new_len: int, old_len: int) -> None:
        """The canvas was cropped from old_len to new_len (>= the block end): drop those suffix keys."""
        if self.kv is None or new_len >= old_len:
            return
        if self.mode == "dual":
            self.kv.crop(-(old_len - new_len))
            self.kv_valid = self.kv_valid[:, :self.kv_valid.shape[1] - (old_len - new_len)]
