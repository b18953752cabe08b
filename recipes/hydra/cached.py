"""Hydra / Hydra++ on cached base hidden states (config key ``states``), optionally over a draft vocabulary.

The base is frozen, so its last hidden states come from a states directory written once
(`accel data self-distill --states DIR`, `accel.recipes.shared.state_cache`). Unlike Medusa, Hydra++'s prefix
layer attends over the whole context, so batches are sequences: the cached states of each
sequence (padded on the left), its token ids for the heads' teacher-forced inputs (the base's
frozen input embedding) and, per head, the token k+1 places ahead as the target. On
self-distilled data the response tokens are the base's own greedy tokens, so CE to them is the
distillation target greedy verification checks; the prompt's tokens are context, not targets.

Heads' logits are computed only at supervised positions (the prompts are ~40% of the tokens).
With ``draft_vocab_size`` targets outside the draft vocabulary leave the loss but count as misses
in the measured accuracies (and so in the tree built from them).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from accel.core.errors import UserError
from accel.data.draft_vocab import coverage, select_draft_vocab, source_counts, token_counts
from accel.decoding.tree_build import build_tree, chain_accept_length, expected_accept_length
from accel.models.masks import position_ids
from accel.recipes.hydra.config import Config
from accel.recipes.hydra.heads import HydraHeads
from accel.recipes.shared.heads import log_head
from accel.recipes.shared.state_cache import StateCache
from accel.trainers.trainer import fit, unwrap


def _err(msg):
    return UserError(msg)


def collate(cache, idx, t2d):
    """Left-padded states [B,L,H] (the last position's state is never needed: zeros), ids [B,L], valid,
    and targets [B,L] (draft ids of response tokens, -100 elsewhere)."""
    seqs = [cache.seqs[i] for i in idx]
    L = max(len(s.ids) for s in seqs)
    B, H = len(seqs), cache.h.shape[1]
    h = torch.zeros(B, L, H)
    ids = torch.zeros(B, L, dtype=torch.long)
    valid = torch.zeros(B, L, dtype=torch.bool)
    tgt = torch.full((B, L), -100, dtype=torch.long)
    for b, s in enumerate(seqs):
        n = len(s.ids)
        off = L - n
        h[b, off:L - 1] = cache.h[s.row:s.row + n - 1].float()
        ids[b, off:] = torch.tensor(s.ids)
        valid[b, off:] = True
        t = torch.tensor(s.ids[s.prompt_len:])
        if t2d is not None:
            t = t2d[t]
            t = torch.where(t < 0, torch.full_like(t, -100), t)
        tgt[b, off + s.prompt_len:] = t
    return {"h": h, "ids": ids, "valid": valid, "targets": tgt}


def head_logits(heads, embed, batch):
    """[(logits [M_k, V'], targets [M_k]) per head]: head k at each position whose token k+1 ahead is a target."""
    ids, valid, tgt = batch["ids"], batch["valid"], batch["targets"]
    ctx = heads.context(batch["h"], valid, position_ids(valid))
    emb = embed(ids).detach().to(ctx.dtype)
    L = ids.shape[1]
    out = []
    for k, head in enumerate(heads.heads, start=1):
        n = L - k - 1
        if n <= 0:
            out.append((ctx.new_zeros(0, heads.vocab), tgt.new_zeros(0)))
            continue
        y = tgt[:, k + 1:k + 1 + n]
        m = (y != -100) & valid[:, :n]
        embs = torch.stack([emb[:, j:j + n][m] for j in range(1, k + 1)], dim=1)  # [M, k, H]
        out.append((head(ctx[:, :n][m], embs), y[m]))
    return out


def loss_and_metrics(per_head, topk: int):
    total, metrics, top1s = None, {}, []
    for k, (lg, y) in enumerate(per_head, start=1):
        if not len(y):
            top1s.append(0.0)
            continue
        lk = F.cross_entropy(lg.float(), y)
        total = lk if total is None else total + lk
        top1s.append(log_head(metrics, k, lk, lg, y, topk))
    metrics["est_accept_chain"] = chain_accept_length(top1s)
    return total, metrics


def measure(heads, embed, cache, idx, t2d, token_map, topk: int, batch_size: int = 8) -> dict:
    """Held-out top-k accuracy per head in the FULL vocabulary (a target outside the draft one is a miss)."""
    K = heads.num_heads
    counts = torch.zeros(K, topk + 1, dtype=torch.float64)
    was = heads.training
    heads.eval()
    full = []
    with torch.no_grad():
        for i in range(0, len(idx), batch_size):
            b = collate(cache, idx[i:i + batch_size], None)  # full-vocabulary targets
            full += b["targets"][b["targets"] != -100].tolist()
            if t2d is not None:
                m = b["targets"] >= 0
                mapped = torch.full_like(b["targets"], -100)
                mapped[m] = t2d[b["targets"][m]]
                oov = m & (mapped < 0)
                mapped[oov] = -2  # a target the heads cannot produce: always a miss
                b["targets"] = mapped
            for k, (lg, y) in enumerate(head_logits(heads, embed, b)):
                if not len(y):
                    continue
                top = lg.topk(topk, -1).indices
                hit = top == y[:, None]
                rank = torch.where(hit.any(-1), hit.float().argmax(-1).long(), torch.full_like(y, topk))
                counts[k] += torch.bincount(rank, minlength=topk + 1).double()
    heads.train(was)
    acc = (counts[:, :topk] / counts.sum(1, keepdim=True).clamp(min=1)).tolist()
    out = {"topk_accuracy": acc}
    if token_map is not None:
        out["draft_vocab_coverage"] = coverage(token_map.tolist(), full)
    return out


def run_cached(cfg: Config, adapter, run_dir: Path):
    """Trains the heads from cached states; returns (heads, stats) for `save_final`."""
    path = Path(cfg.states).expanduser()
    if not (path / "meta.json").exists():
        raise _err(f"states={cfg.states}: not a states directory; write one with `accel data self-distill ... "
                   "--states DIR`")
    cache = StateCache(path, adapter=adapter)
    n = len(cache)
    n_held = min(cfg.eval_seqs, max(1, n // 20)) if cfg.eval_seqs else 0
    if n - n_held < 1:
        raise _err(f"states={cfg.states}: need more sequences than eval_seqs (got {n})")
    train_idx, held_idx = list(range(n - n_held)), list(range(n - n_held, n))
    mc = adapter.model.config
    lm_head = adapter.model.get_output_embeddings()
    V = lm_head.weight.shape[0]
    token_map = t2d = None
    if cfg.draft_vocab_size and cfg.draft_vocab_size < V:
        counts = token_counts(cache.seqs[i].ids[cache.seqs[i].prompt_len:] for i in train_idx)
        if cfg.draft_vocab_extra:
            counts += source_counts(adapter.tokenizer, cfg.draft_vocab_extra, seed=cfg.seed)
        token_map = torch.tensor(select_draft_vocab(counts, cfg.draft_vocab_size, adapter.eos_ids, V))
        t2d = torch.full((V,), -1, dtype=torch.long)
        t2d[token_map] = torch.arange(len(token_map))
    heads = HydraHeads(mc.hidden_size, V, cfg.num_heads, cfg.num_layers, cfg.resolved_dropout(),
                       prefix_config=mc if cfg.variant == "hydra++" else None, token_map=token_map)
    heads.init_from_lm_head(lm_head)
    embed = adapter.model.get_input_embeddings()
    embed.requires_grad_(False)

    class Train(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = heads

    def loss_fn(m, batch):
        loss, metrics = loss_and_metrics(head_logits(unwrap(m).heads, embed, batch), cfg.topk)
        return (loss if loss is not None else sum(p.sum() * 0 for p in heads.parameters())), metrics

    def stats():
        r = measure(heads, embed, cache, held_idx, t2d, token_map, cfg.topk)
        tree = build_tree(r["topk_accuracy"], cfg.tree_nodes or 48)
        r.update(tree=tree.to_json(), est_accept_chain=chain_accept_length([a[0] for a in r["topk_accuracy"]]),
                 est_accept_tree_model=expected_accept_length(r["topk_accuracy"], tree))
        return r

    def eval_fn(m):
        r = stats()
        out = {f"top1_head{k + 1}": a[0] for k, a in enumerate(r["topk_accuracy"])}
        out.update(est_accept_chain=r["est_accept_chain"], est_accept_tree=r["est_accept_tree_model"])
        return out

    train = list(train_idx)
    fit(cfg, Train(), loss_fn, train, data_collator=lambda idx: collate(cache, idx, t2d),
        eval_fn=eval_fn if held_idx else None, trainable_parameters=list(heads.parameters()))
    return heads.eval(), (stats() if held_idx else None)
