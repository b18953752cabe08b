"""EAGLE-3 on cached target states (config key ``states``): no target forward during training.

An EAGLE-3 step needs three things from the frozen target at every position: the hidden states
of its feature layers (the draft's input), its distribution over the draft vocabulary (the soft
target of every unroll step) and its greedy token (what the ranks and the acceptance estimate are
counted against). Computed online, that is a full forward of the target and its whole output
projection per step — on a CPU more than half of the step (SmolLM2-135M: the 30-layer forward and
the 49K-row projection against a one-layer draft). A states directory written while
self-distilling with ``--feature-layers`` (`accel.recipes.shared.state_cache`) holds the first
and the target's last hidden state; the second is then the last hidden state through the
*draft vocabulary's* rows of the output projection (3,072 of 49,152 on SmolLM2), and the third is
the data itself: the self-distilled responses are the target's greedy tokens.

A batch is sequences, left-padded like `accel.data.collate.ar_batch` (labels: the response, its
end token included where it was generated), plus ``feats`` [B,L,layers*H] and ``h`` [B,L,H]; the
last position of a sequence has no state (nothing follows it) and stays zero, unread by the loss.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from accel.core.errors import UserError
from accel.recipes.shared.state_cache import StateCache


def load_states(states: str, adapter, layers: list[int]) -> StateCache:
    """The StateCache at `states`, checked to hold the feature layers the draft reads."""
    path = Path(states).expanduser()
    if not (path / "meta.json").exists():
        raise UserError(f"states={states}: not a states directory; write one with `accel data self-distill ... "
                        f"--states DIR --feature-layers {','.join(map(str, layers))}`")
    cache = StateCache(path, adapter=adapter)
    if cache.feature_layers != list(layers):
        held = cache.feature_layers or "none"
        raise UserError(f"states={states} holds feature layers {held}; this draft reads {list(layers)}: write the "
                        f"directory with `accel data self-distill ... --feature-layers {','.join(map(str, layers))}` "
                        "or set feature_layers to what it holds")
    if len(cache) < 2:
        raise UserError(f"states={states}: need at least 2 sequences (got {len(cache)})")
    return cache


def pairs(cache: StateCache, idx) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) of the cached sequences `idx` (the draft vocabulary is counted from these)."""
    return [(cache.seqs[i].ids[:cache.seqs[i].prompt_len], cache.seqs[i].ids[cache.seqs[i].prompt_len:]) for i in idx]


def collate(cache: StateCache, pad_id: int):
    """idx -> {"ids", "valid", "labels", "feats", "h"}: the batch `accel.recipes.eagle3.train` reads."""
    def fn(idx):
        seqs = [cache.seqs[int(i)] for i in idx]
        B, L = len(seqs), max(len(s.ids) for s in seqs)
        H, Fdim = cache.h.shape[1], cache.f.shape[1]
        ids = torch.full((B, L), pad_id, dtype=torch.long)
        valid = torch.zeros((B, L), dtype=torch.bool)
        labels = torch.full((B, L), -100, dtype=torch.long)
        feats = torch.zeros(B, L, Fdim)
        h = torch.zeros(B, L, H)
        for b, s in enumerate(seqs):
            n, off = len(s.ids), L - len(s.ids)
            t = torch.tensor(s.ids)
            ids[b, off:], valid[b, off:] = t, True
            labels[b, off + s.prompt_len:] = t[s.prompt_len:]
            feats[b, off:L - 1] = cache.f[s.row:s.row + n - 1].float()
            h[b, off:L - 1] = cache.h[s.row:s.row + n - 1].float()
        return {"ids": ids, "valid": valid, "labels": labels, "feats": feats, "h": h}

    return fn


def target_from_batch(base, batch, draft_ids):
    """(features [B,L,3H], target logits over the draft vocabulary [B,L,Vd], greedy next token [B,L]
    (-1 where the next token is not a response token), E(x_{t+1}) [B,L,H]) from a cached batch."""
    ids, labels = batch["ids"], batch["labels"]
    head = base.get_output_embeddings()
    with torch.no_grad():
        bias = head.bias[draft_ids] if getattr(head, "bias", None) is not None else None
        logits = F.linear(batch["h"].to(head.weight.dtype), head.weight[draft_ids], bias)
        nxt = torch.where(labels[:, 1:] != -100, ids[:, 1:], torch.full_like(ids[:, 1:], -1))
        greedy = torch.cat([nxt, torch.full_like(ids[:, :1], -1)], 1)
        emb = base.get_input_embeddings()(ids)
        emb_next = torch.cat([emb[:, 1:], emb[:, -1:]], 1)
    return batch["feats"], logits, greedy, emb_next
