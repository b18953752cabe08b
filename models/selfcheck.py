"""A short probe after every load of shipped model code: is this model computing what we think?

Code written for an older transformers can load without an error and still be wrong (Dream's
RoPE buffers left uninitialised; a LLaDA variant that drops the attention bias). A few tiny
forwards catch that before hours of decoding or training do:

- logits are finite, and two forwards of the same input agree (no stray state);
- the logits agree with the ones an earlier load of the same weights gave on this machine
  (a fingerprint per weights stamp, device type and dtype, kept under ``$ACCEL_CACHE_DIR`` or
  ``~/.cache/accel``): a load that leaves state uninitialised differs from load to load;
- dLLMs: a block-causal mask is honoured (block 0's logits do not move when a block-1 token
  changes). D2F needs that; other decoders use full attention and do not;
- where the family has a KV cache: feeding a block against the cached prefix gives the logits
  of one uncached forward under the equivalent mask (Fast-dLLM prefix/dual and cached D2F rely
  on it). For LLaDA that compares accel's cached forward with the published uncached one, so a
  checkpoint whose weights or config it does not compute falls back to the published forward
  without a cache, with one line on stderr.

Results land in ``adapter.extra``: ``block_causal`` and ``cache`` (bools), read by the decoders.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from accel.models.weights import weights_stamp

TOL = {"float32": 1e-3, "float64": 1e-6}
"""Max abs logit difference, relative to the logits' scale, that counts as equal; half
precision (3e-2) differs between kernel shapes (a cached block vs a full forward). What the
probe looks for (uninitialised buffers, an ignored mask) moves logits by whole units."""


class SelfCheckError(ValueError):
    """The loaded model fails the probe; the message says which part and what it means."""


def _close(a, b) -> tuple[bool, float]:
    diff = float((a.float() - b.float()).abs().max())
    scale = max(1.0, float(a.float().abs().max()))
    return diff <= TOL.get(str(a.dtype).replace("torch.", ""), 3e-2) * scale, diff


def _probe_ids(adapter, n: int):
    """Deterministic ordinary token ids (no specials), the same on every load."""
    import torch
    vocab = min(len(adapter.tokenizer), adapter.model.get_input_embeddings().num_embeddings, 30000)
    lo = 100 if vocab > 400 else 0  # past the usual specials, when there is room
    ids = [(1009 * (i + 1)) % (vocab - lo) + lo for i in range(n)]
    return torch.tensor([ids], device=adapter.device)


def _mask(groups: list[int]):
    """[1, 1, L, L] bool (True = attend), one unpadded row: column j is visible to row i when
    group(j) <= group(i); equal ids attend fully among themselves. The decoders' masks, inline
    so the probe depends on nothing above this package."""
    import torch
    g = torch.tensor(groups)
    return (g[None, :] <= g[:, None])[None, None]


def _block_groups(L: int, P: int, blk: int, shift: bool) -> list[int]:
    """Block-causal groups as the decoders use them: prompt -1, then blocks of blk (a shifted
    model groups states by the token they predict: every group starts one column earlier)."""
    P = P - int(shift)
    return [-1 if j < P else (j - P) // blk for j in range(L)]


def run(adapter, fingerprint: bool = False) -> None:
    """Probe `adapter` (see the module docstring); raises SelfCheckError, fills adapter.extra."""
    import torch

    fam = adapter.family_spec
    dllm = adapter.kind == "dllm"
    with torch.no_grad():
        ids = _probe_ids(adapter, 12)
        if dllm:
            ids[:, 6:] = adapter.mask_id
        L, dev = ids.shape[1], ids.device
        pos = torch.arange(L, device=dev)[None]
        mask = torch.ones(1, 1, L, L, dtype=torch.bool, device=dev)
        a = fam.forward(adapter.model, ids, mask, pos).logits
        b = fam.forward(adapter.model, ids, mask, pos).logits
        if not torch.isfinite(a).all():
            raise SelfCheckError(f"{adapter.source}: the model's logits are not finite on a probe input; "
                                 "its weights or its code do not load correctly with this transformers version")
        same, diff = _close(a, b)
        if not same:
            raise SelfCheckError(f"{adapter.source}: two forwards of the same input differ (max {diff:.3g}); "
                                 "the model is not deterministic in eval mode")
        if fingerprint:
            _check_fingerprint(adapter, a)
        if dllm:
            masks = adapter.extra["block_causal"] = _honours_block_mask(adapter, ids, pos)
            adapter.extra["cache"] = _cache_usable(adapter, ids, pos, say=masks)


def _cache_usable(adapter, ids, pos, say: bool = True) -> bool:
    """Whether cached decoding runs: the family computes this model's cached forward and it matches
    the uncached one. When it does not, one line says so (`say`; not for a model that ignores its
    mask, whose own error says more) and every forward is the uncached one."""
    fam = adapter.family_spec
    if not fam.supports_cache:
        return False
    why = fam.cache_unsupported(adapter.model)
    if why is None:
        if _cache_matches(adapter, ids, pos):
            return True
        why = "a block fed against its KV cache does not give the logits of the uncached forward"
    if say:
        print(f"note: {adapter.source}: {why}; decoding it without a KV cache", file=sys.stderr, flush=True)
    return False


def _honours_block_mask(adapter, ids, pos) -> bool:
    """Block 0 (positions 4..7) must not see a change in block 1 (8..11) under a block-causal mask."""
    fam = adapter.family_spec
    P, blk, L = 4, 4, ids.shape[1]
    mask = _mask(_block_groups(L, P, blk, adapter.shift_logits)).to(ids.device)
    x2 = ids.clone()
    x2[:, P + blk + 1] = ids[0, 1]
    a = fam.forward(adapter.model, ids, mask, pos).logits
    b = fam.forward(adapter.model, x2, mask, pos).logits
    q = slice(P - int(adapter.shift_logits), P + blk - int(adapter.shift_logits))  # block 0's query states
    return _close(a[:, q], b[:, q])[0]


def _cache_matches(adapter, ids, pos) -> bool:
    """Cached block forward == uncached forward under the mask where the prefix cannot see the block."""
    import torch
    fam = adapter.family_spec
    P, L, dev = 8, ids.shape[1], ids.device
    mask = _mask([-1] * P + [0] * (L - P)).to(dev)
    full = fam.forward(adapter.model, ids, mask, pos).logits[:, P:]
    pre = fam.forward(adapter.model, ids[:, :P], torch.ones(1, 1, P, P, dtype=torch.bool, device=dev), pos[:, :P],
                      use_cache=True)
    if pre.past_key_values is None:
        return False
    blk = fam.forward(adapter.model, ids[:, P:], torch.ones(1, 1, L - P, L, dtype=torch.bool, device=dev),
                      pos[:, P:], past_key_values=pre.past_key_values, use_cache=True).logits
    return _close(full, blk)[0]


def cache_dir() -> Path:
    return Path(os.environ.get("ACCEL_CACHE_DIR") or Path.home() / ".cache" / "accel")


def fingerprint_path(adapter) -> Path | None:
    """Where the probe logits of these weights (on this device type, in this dtype) are kept."""
    stamp = weights_stamp(adapter.source)
    if not stamp:
        return None
    dtype = str(next(adapter.model.parameters()).dtype).replace("torch.", "")
    return cache_dir() / "probes" / f"{adapter.family}-{stamp}-{adapter.device.type}-{dtype}.json"


def _check_fingerprint(adapter, logits) -> None:
    """Compare the probe's logits with the ones an earlier load of the same weights gave."""
    path = fingerprint_path(adapter)
    if path is None:
        return
    head = logits[0, :, :64].float().cpu()
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = None
    if earlier is not None:
        import torch
        same, diff = _close(torch.tensor(earlier["logits"]), head)
        if not same:
            raise SelfCheckError(f"{adapter.source}: its logits differ from an earlier load of the same weights "
                                 f"(max {diff:.3g}): the model's code leaves state uninitialised when loaded with "
                                 "this transformers version; its family is not supported yet")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"source": adapter.source, "logits": head.tolist()}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only loses the cross-load comparison
