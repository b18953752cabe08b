"""Training a draft (Hydra heads, an EAGLE-3 draft) on a frozen AR model: the pieces both recipes run.

The recipe supplies what is its own (the module, its loss, how a batch turns into the rank of the
base's greedy token per draft step) and these do the rest the same way for both: batches, the
held-out statistics a checkpoint is chosen by and its tree is built from, `fit` with them at save
points, and RUN/final written in one rename.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from accel.core.files import atomic_dir, save_tensors
from accel.data.collate import ar_batch
from accel.decoding.tree_build import accept_lengths, build_tree, expected_accept_length
from accel.recipes.shared.models import with_frozen_base
from accel.trainers.rundir import is_rank0
from accel.trainers.trainer import fit


def collate(tok):
    """(prompt ids, response ids) pairs -> {"ids", "valid", "labels"} (`accel.data.collate.ar_batch`)."""
    def fn(pairs):
        ids, valid, labels = ar_batch(pairs, tok)
        return {"ids": ids, "valid": valid, "labels": labels}

    return fn


def held_out_statistics(module, pairs, tok, ranks_of: Callable, steps: int, topk: int, tree_nodes: int,
                        conditional: bool, batch_size: int = 64, collate_fn: Callable | None = None) -> dict:
    """Per draft step top-k accuracy on held-out `pairs`, the tree built from it and acceptance estimates.
    `collate_fn` batches `pairs` (default: `collate(tok)`; a recipe on cached states passes its own and
    indices).

    `ranks_of(batch)` -> (ranks [B,T,steps], usable, anchor) of the base's greedy token among the
    draft's logits (`accel.decoding.tree_build`). `conditional`: step k counts only where every
    earlier step's true token was in its top-k (what a tree can reach from a drafted prefix, EAGLE-3);
    otherwise each step is counted on its own (Hydra's teacher-forced heads).
    """
    fn = collate_fn or collate(tok)
    dev = next(module.parameters()).device
    counts = torch.zeros(steps, topk + 1, dtype=torch.float64)
    all_ranks, all_usable = [], []
    was = module.training
    module.eval()
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            ranks, usable, anchor = ranks_of({k: v.to(dev) for k, v in fn(pairs[i:i + batch_size]).items()})
            reach = torch.ones_like(usable[..., 0])
            for k in range(steps):
                m = usable[..., k] & reach
                counts[k] += torch.bincount(ranks[..., k][m].cpu(), minlength=topk + 1)[:topk + 1].double()
                if conditional:
                    reach = reach & (ranks[..., k] < topk)
            all_ranks.append(ranks[anchor].cpu())
            all_usable.append(usable[anchor].cpu())
    module.train(was)
    acc = (counts[:, :topk] / counts.sum(1, keepdim=True).clamp(min=1)).tolist()
    tree = build_tree(acc, tree_nodes)
    ranks, usable = torch.cat(all_ranks)[None], torch.cat(all_usable)[None]
    has = ranks.numel() > 0
    return {"topk_accuracy": acc, "tree": tree.to_json(),
            "est_accept_chain": float(accept_lengths(ranks, usable).float().mean()) if has else 1.0,
            "est_accept_tree": float(accept_lengths(ranks, usable, tree.paths).float().mean()) if has else 1.0,
            "est_accept_tree_model": expected_accept_length(acc, tree)}


def fit_draft(cfg, run_dir: Path, name: str, module, base, pairs, held_out, tok, loss_fn, statistics: Callable,
              top1_key: Callable[[int], str], save_final: Callable, collate_fn: Callable | None = None) -> Path:
    """`fit` the draft `module` (checkpointed as ``name.*``) on the frozen `base`, then RUN/final on rank 0.

    `statistics(module, held_out)` -> `held_out_statistics`' dict: at save points its top-1 accuracy
    per step (keys `top1_key(k)`) and acceptance estimates are logged, at the end it goes to
    `save_final(module, cfg, run_dir / "final", stats)` (None without held-out pairs). `collate_fn`
    batches `pairs` (default: `collate(tok)`).
    """
    model = with_frozen_base(name, module, base)

    def eval_fn(m):
        s = statistics(getattr(m, name), held_out)
        res = {top1_key(k): a[0] for k, a in enumerate(s["topk_accuracy"])}
        res.update({k: s[k] for k in ("est_accept_chain", "est_accept_tree")})
        return res

    fit(cfg, model, loss_fn, pairs, data_collator=collate_fn or collate(tok), eval_fn=eval_fn if held_out else None,
        trainable_parameters=list(module.parameters()))
    if is_rank0():
        save_final(module, cfg, run_dir / "final", statistics(module, held_out) if held_out else None)
    return run_dir


def write_final(module, out: Path, weights_file: str, meta_file: str, meta: dict) -> Path:
    """RUN/final/{weights_file, meta_file}: the module's tensors and its JSON meta, replaced in one rename."""
    with atomic_dir(out, may_replace=lambda p: True) as tmp:
        save_tensors({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, tmp / weights_file)
        (tmp / meta_file).write_text(json.dumps(meta, indent=1))
    return out
