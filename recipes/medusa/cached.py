"""Medusa-1 on cached base hidden states (config key ``states``), optionally over a draft vocabulary.

The base is frozen in Medusa-1, so its last hidden states are the same every epoch: they are read
from a states directory (`accel data self-distill --states DIR`, or built here once from the
{prompt, response} data with `accel.recipes.shared.state_cache.compute_states`), and training samples
*positions*, not sequences: a batch is per_device_train_batch_size states and, for each head k,
the token k+2 places ahead. The data is the base's own greedy output (self-distillation), so
cross-entropy to it is distillation of the base's argmax; no base forward runs during training.

With ``draft_vocab_size`` N > 0 the heads predict over the N most frequent target tokens of the
training positions (`accel.data.draft_vocab`); targets outside it are left out of the loss but
counted as misses in every accuracy, so the measured numbers (and the tree built from them)
include what the truncation costs.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from rich.progress import Progress

from accel.data.draft_vocab import coverage, select_draft_vocab, source_counts, token_counts
from accel.decoding.tree_build import build_tree, chain_accept_length, expected_accept_length
from accel.recipes.medusa.config import Config
from accel.recipes.medusa.examples import _err, load_examples
from accel.recipes.medusa.heads import AUTO_TREE_ESTIMATE, MedusaHeads, split_model
from accel.recipes.medusa.loss import accuracies
from accel.recipes.shared.state_cache import StateCache, compute_states
from accel.trainers.trainer import fit, unwrap


def states_dir(cfg: Config, run_dir: Path) -> Path:
    return Path(cfg.states).expanduser() if cfg.states != "auto" else run_dir / "states"


def load_cache(cfg: Config, adapter, run_dir: Path):
    """The StateCache for this run: an existing directory, or built from cfg.data (states=auto)."""
    path = states_dir(cfg, run_dir)
    if cfg.states == "auto":
        if cfg.data == "builtin":
            raise _err("states=auto caches states of a data file; with data=builtin leave states empty")
        train, held = load_examples(cfg, adapter.tokenizer)
        exs = train + held
        seqs = [ids for ids, _ in exs]
        plens = [m.index(True) if True in m else len(m) for _, m in exs]
        with Progress(transient=True) as bar:
            job = bar.add_task("base hidden states", total=len(seqs))
            compute_states(adapter, seqs, plens, path, batch_size=8,
                           progress=lambda d, t: bar.update(job, completed=d, total=t))
        return StateCache(path, expect_n=len(seqs), adapter=adapter)
    if not (path / "meta.json").exists():
        raise _err(f"states={cfg.states}: not a states directory; write one with `accel data self-distill ... "
                   "--states DIR` or use states=auto")
    return StateCache(path, adapter=adapter)


def positions(cache, num_heads: int, seq_ids: range):
    """(rows [M], targets [M, K] full ids or -100) of the supervised states of the given sequences:
    every state from the last prompt token on; head k's target is the token k+2 places ahead."""
    rows, tgts = [], []
    for i in seq_ids:
        s = cache.seqs[i]
        L = len(s.ids)
        ids = torch.tensor(s.ids + [-100] * (num_heads + 1))
        t = torch.arange(max(0, s.prompt_len - 1), L - 1)
        if not len(t):
            continue
        rows.append(s.row + t)
        tgts.append(torch.stack([ids[t + k + 2] for k in range(num_heads)], 1))
    return torch.cat(rows), torch.cat(tgts)


class PositionData:
    """Training positions as a dataset of indices; the collator gathers states and mapped targets."""

    def __init__(self, cache, rows, targets, t2d):
        self.cache, self.rows, self.targets, self.t2d = cache, rows, targets, t2d

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return i

    def collate(self, idx):
        idx = torch.as_tensor(idx)
        tgt = self.targets[idx]
        return {"h": self.cache.h[self.rows[idx]].float(), "targets": map_targets(tgt, self.t2d)}


def map_targets(tgt, t2d):
    """Full ids -> draft indices (-100 where absent from the draft vocabulary or already -100)."""
    if t2d is None:
        return tgt
    ok = tgt >= 0
    out = torch.full_like(tgt, -100)
    out[ok] = t2d[tgt[ok]]
    return torch.where(out < 0, torch.full_like(out, -100), out)


def positions_loss(logits, targets, decay: float, topk: int):
    """sum_k decay**k CE_k over positions with a target; per-head top-1/top-k metrics (hits / positions)."""
    total = logits.new_zeros(())
    metrics, top1s = {}, []
    for k in range(logits.shape[1]):
        y = targets[:, k]
        keep = y != -100
        if not bool(keep.any()):
            top1s.append(0.0)
            continue
        sel = logits[keep, k].float()
        loss_k = F.cross_entropy(sel, y[keep])
        total = total + decay ** k * loss_k
        top = sel.topk(min(topk, sel.shape[-1]), -1).indices
        t1 = float((top[:, 0] == y[keep]).float().mean())
        metrics[f"head{k}_loss"] = float(loss_k.detach())
        metrics[f"head{k}_top1"] = t1
        metrics[f"head{k}_top{topk}"] = float((top == y[keep][:, None]).any(-1).float().mean())
        top1s.append(t1)
    metrics["est_accept_len"] = chain_accept_length(top1s)
    return total, metrics


def measure_positions(heads, cache, rows, targets, token_map, topk: int, batch: int = 4096) -> dict:
    """Held-out accuracies in the FULL vocabulary: a target outside the draft vocabulary is a miss."""
    K = targets.shape[1]
    counts = torch.zeros(K, topk + 1, dtype=torch.long)
    dev = heads.lm_heads[0].weight.device
    was = heads.training
    heads.eval()
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            logits = heads(cache.h[rows[i:i + batch]].float().to(dev))  # [n, K, Vd]
            top = logits.topk(topk, -1).indices.cpu()
            if token_map is not None:
                top = token_map.cpu()[top]
            tgt = targets[i:i + batch]
            for k in range(K):
                keep = tgt[:, k] != -100
                hit = top[keep, k] == tgt[keep, k][:, None]
                rank = torch.where(hit.any(-1), hit.float().argmax(-1), torch.full_like(tgt[keep, k], topk))
                counts[k] += torch.bincount(rank, minlength=topk + 1)
    heads.train(was)
    acc = accuracies(counts)
    out = {"accuracy": acc, "chain_accept_len": chain_accept_length([a[0] for a in acc])}
    if token_map is not None:
        out["draft_vocab_coverage"] = coverage(token_map.tolist(), targets[:, 0][targets[:, 0] != -100].tolist())
    return out


def run_cached(cfg: Config, adapter, run_dir: Path):
    """Medusa-1 from cached states; returns (heads, measured) for `save_final`."""
    cache = load_cache(cfg, adapter, run_dir)
    n = len(cache)
    if n < 2:
        raise _err(f"states {states_dir(cfg, run_dir)}: need at least 2 sequences (got {n})")
    n_held = max(1, n // 20)
    rows, targets = positions(cache, cfg.num_heads, range(n - n_held))
    held_rows, held_targets = positions(cache, cfg.num_heads, range(n - n_held, n))
    if cfg.eval_positions and len(held_rows) > cfg.eval_positions:
        held_rows, held_targets = held_rows[:cfg.eval_positions], held_targets[:cfg.eval_positions]
    _, lm_head = split_model(adapter.model)
    V = lm_head.weight.shape[0]
    token_map = t2d = None
    if cfg.draft_vocab_size and cfg.draft_vocab_size < V:
        counts = token_counts([targets[:, 0][targets[:, 0] >= 0].tolist()])
        if cfg.draft_vocab_extra:
            counts += source_counts(adapter.tokenizer, cfg.draft_vocab_extra, seed=cfg.seed)
        token_map = torch.tensor(select_draft_vocab(counts, cfg.draft_vocab_size, adapter.eos_ids, V))
        t2d = torch.full((V,), -1, dtype=torch.long)
        t2d[token_map] = torch.arange(len(token_map))
    H = cache.h.shape[1]
    heads = MedusaHeads(H, V, cfg.num_heads, cfg.num_layers, lm_head.weight.float(), token_map=token_map)
    data = PositionData(cache, rows, targets, t2d)

    class Train(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = heads

    model = Train()

    def loss_fn(m, batch):
        return positions_loss(unwrap(m).heads(batch["h"]), batch["targets"], cfg.head_decay, cfg.topk)

    def eval_fn(m):
        r = measure_positions(m.heads, cache, held_rows, held_targets, token_map, cfg.topk)
        out = {f"head{k}_top1": a[0] for k, a in enumerate(r["accuracy"])}
        out.update({f"head{k}_top{cfg.topk}": sum(a) for k, a in enumerate(r["accuracy"])})
        tree = build_tree(r["accuracy"], cfg.tree_nodes or AUTO_TREE_ESTIMATE)
        out.update(chain_accept_len=r["chain_accept_len"], tree_accept_len=expected_accept_length(r["accuracy"], tree))
        return out

    fit(cfg, model, loss_fn, data, data_collator=data.collate, eval_fn=eval_fn,
        trainable_parameters=list(heads.parameters()))
    r = measure_positions(heads, cache, held_rows, held_targets, token_map, cfg.topk)
    tree = build_tree(r["accuracy"], cfg.tree_nodes or AUTO_TREE_ESTIMATE)
    measured = {"accuracy": r["accuracy"], "tree": tree, "chain_accept_len": r["chain_accept_len"],
                "tree_accept_len": expected_accept_length(r["accuracy"], tree),
                "train_positions": len(rows), "held_positions": len(held_rows)}
    if "draft_vocab_coverage" in r:
        measured["draft_vocab_coverage"] = r["draft_vocab_coverage"]
    return heads, measured
