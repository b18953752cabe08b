"""Exact evaluation: the true K-token joint of the frozen model vs the sampler's and the marginals'.

The state (the "short span"): per prompt, the frozen model's own one-token-per-forward
trajectory (the K=1 rule of `decode.py` at the evaluation temperature, seeded by the prompt) is
run until its block has exactly K masked positions left; on the built-in tasks those are the
answer's least certain tokens (the model settles the end-token padding and the forced tokens
first), e.g. the digits of a ``shuffle`` answer. Every rule unmasks all K of them in one step,
so an outcome is an assignment of tokens to those K positions and the three rules are compared
on the same outcomes, whatever order they fill them in.

Why not the all-mask first step: there the K most confident positions are mostly end-token
padding whose float32 confidences saturate at 1.0 and tie; which tied position goes first is
noise in the last bit, yet it changes the outcome set, so TV there measured tie-breaking
between identical end tokens, not the tokens' dependence (session-3 numbers: first-step TV 0.82
for the marginals and 0.89 for a sampler that did reduce the invalid answers).

The *true* joint is what K steps of the one-token-per-forward rule produce from the state: at
each node of a tree, one full forward, the most confident masked position, and a token drawn
from softmax(logits / T). It is enumerated with real full forwards over the tree of choices,
keeping the top-m tokens per node (``top_m``; one batched forward per tree level). Positions are
a deterministic function of the tokens drawn so far, so an outcome has one path, and the
sampler's and the marginal baseline's probability of every enumerated outcome is computed
exactly by walking their own rule along it.

Metrics per prompt (the enumerated outcomes plus one "rest" bucket holding 1 - covered mass):
- ``tv``: 0.5 * (sum |P - Q| + |P_rest - Q_rest|), a lower bound of the true TV that is exact
  when ``coverage`` = sum P = 1;
- ``kl``: KL(P || Q) over the same outcomes + rest bucket (a lower bound of the true KL, exact at
  coverage 1), Q floored at 1e-6 (the marginal baseline gives zero mass to many true outcomes;
  the floor keeps it finite).
Prompts whose trajectory never has exactly K masks left in a block (answers shorter than K with
nothing uncertain) have no span and are skipped; ``n`` counts the scored ones.
"""
from __future__ import annotations

import hashlib
import math

import torch

from accel.models.masks import full_mask, position_ids
from accel.recipes.joint_sampler.data import record_trajectories
from accel.recipes.joint_sampler.decode import _block_logits
from accel.recipes.joint_sampler.layer import additive_mask, backbone_forward, sampler_logits
from accel.trainers.preempt import poll

Q_FLOOR = 1e-6


def _choose(blk: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """Most confident available position per row (-1 when none): the decode rule's order."""
    conf = torch.softmax(blk, -1).amax(-1).masked_fill(~avail, -1.0)
    return torch.where(avail.any(1), conf.argmax(1), torch.full_like(conf.argmax(1), -1))


@torch.no_grad()
def true_joint(adapter, x, attn, pos, s: int, e: int, k: int, top_m: int, temperature: float = 1.0):
    """Enumerates the true joint from one canvas x [1, L]: (outcomes [list of ((p, t), ...)], P [N])."""
    mask_id = adapter.mask_id
    nodes, logp, paths = x.clone(), torch.zeros(1, dtype=torch.float64, device=x.device), [()]
    for _ in range(k):
        n = nodes.shape[0]
        logits, _ = backbone_forward(adapter, nodes, attn.expand(n, -1, -1, -1), pos.expand(n, -1))
        blk = _block_logits(logits, s, e, mask_id)
        avail = nodes[:, s:e] == mask_id
        p = _choose(blk, avail)
        if (p < 0).all():
            break
        lprob = torch.log_softmax(blk / temperature, -1).double()
        new_nodes, new_lp, new_paths = [], [], []
        for i in range(n):
            if p[i] < 0:  # block exhausted: the path ends here
                new_nodes.append(nodes[i:i + 1]), new_lp.append(logp[i:i + 1]), new_paths.append(paths[i])
                continue
            lp_i = lprob[i, p[i]]
            vals, toks = lp_i.topk(min(top_m, int(torch.isfinite(lp_i).sum())))
            child = nodes[i:i + 1].repeat(len(toks), 1)
            child[:, s + p[i]] = toks
            new_nodes.append(child)
            new_lp.append(logp[i] + vals)
            new_paths += [paths[i] + ((int(p[i]), int(t)),) for t in toks.tolist()]
        nodes, logp, paths = torch.cat(new_nodes), torch.cat(new_lp), new_paths
    return paths, logp.exp()


@torch.no_grad()
def rule_prob(adapter, x, attn, pos, s: int, e: int, paths, temperature: float = 1.0, sampler=None) -> torch.Tensor:
    """Probability [N] that the K-per-forward rule (sampler passes, or marginals when sampler is
    None) unmasks exactly each outcome in `paths`, from the canvas x [1, L]."""
    mask_id = adapter.mask_id
    N = len(paths)
    logits, h = backbone_forward(adapter, x, attn, pos)
    blk0 = _block_logits(logits, s, e, mask_id)
    want = torch.full((N, e - s), -1, dtype=torch.long, device=x.device)  # token each outcome puts at a position
    for i, path in enumerate(paths):
        for p, t in path:
            want[i, p] = t
    k = max((len(p) for p in paths), default=0)
    xr = x.repeat(N, 1)
    new = torch.zeros_like(xr, dtype=torch.bool)
    avail = xr[:, s:e] == mask_id
    logq = torch.zeros(N, dtype=torch.float64, device=x.device)
    alive = torch.ones(N, dtype=torch.bool, device=x.device)
    length = torch.tensor([len(p) for p in paths], device=x.device)
    blk = blk0.expand(N, -1, -1)
    bias = additive_mask(attn, next(sampler.parameters()).dtype) if sampler is not None else None
    for j in range(k):
        if j > 0 and sampler is not None:
            blk = _block_logits(sampler_logits(adapter, sampler, h.expand(N, -1, -1), xr, new,
                                               bias.expand(N, -1, -1, -1), pos.expand(N, -1)), s, e, mask_id)
        go = alive & (j < length)
        p = _choose(blk, avail)
        ok = go & (p >= 0)
        tok = want.gather(1, p.clamp(min=0)[:, None]).squeeze(1)
        ok &= tok >= 0
        alive &= ok | ~go
        r = torch.nonzero(ok).flatten()
        lp = torch.log_softmax(blk[r, p[r]].double() / temperature, -1)
        logq[r] += lp.gather(1, tok[r][:, None]).squeeze(1)
        xr[r, s + p[r]] = tok[r]
        new[r, s + p[r]] = True
        avail[r, p[r]] = False
    return torch.where(alive, logq.exp(), torch.zeros_like(logq))


def tv_kl(P: torch.Tensor, Q: torch.Tensor) -> tuple[float, float]:
    """(TV with a rest bucket, KL(P||Q) on the enumerated support): module docstring."""
    P, Q = P.double(), Q.double()
    P = torch.cat([P, (1 - P.sum()).clamp(min=0)[None]])  # + the rest bucket
    Q = torch.cat([Q, (1 - Q.sum()).clamp(min=0)[None]])
    tv = 0.5 * float((P - Q).abs().sum())
    live = P > 0
    kl = float((P[live] * (P[live].log() - Q[live].clamp(min=Q_FLOOR).log())).sum())
    return tv, max(kl, 0.0)


@torch.no_grad()
def span_state(adapter, prompt: list[int], gen_len: int, block_len: int, k: int, temperature: float):
    """(canvas x [1, L], block start s, block end e) of the prompt's first trajectory state with exactly
    k masks left in its block, or None (module docstring). The trajectory's noise is seeded by the
    prompt's tokens, so a prompt gets the same state in every call and every batch."""
    seed = int.from_bytes(hashlib.sha256(repr((list(prompt), temperature)).encode()).digest()[:6], "little")
    gen = torch.Generator(device=adapter.device).manual_seed(seed)
    # topk=1: only the canvases are needed, not each step's full-vocabulary log-probs
    steps = record_trajectories(adapter, [list(prompt)], gen_len, block_len, temperature, 1, gen)[0]
    for st in steps:
        b = st["block"]
        if int((st["resp"][b * block_len:(b + 1) * block_len] == adapter.mask_id).sum()) == k:
            x = torch.tensor([list(prompt) + st["resp"].tolist()], device=adapter.device)
            s = len(prompt) + b * block_len
            return x, s, s + block_len
    return None


def joint_metrics(adapter, sampler, prompts: list[list[int]], gen_len: int, block_len: int, k: int = 4,
                  top_m: int = 4, temperature: float = 1.0, cache: dict | None = None) -> dict[str, list[float]]:
    """Per scored prompt: tv / kl of the sampler (when given) and of the marginal baseline, and coverage.

    `cache` (a dict) memoises the span and its true joint per (prompt, settings) across calls (bench
    rows share it).
    """
    if temperature <= 0:
        raise ValueError("the joint is compared at a sampling temperature > 0 (T=0 is a point mass)")
    out = {"tv": [], "kl": [], "tv_marginal": [], "kl_marginal": [], "coverage": []}
    for prompt in prompts:
        poll("the trained sampler's checkpoint (the evaluation reruns on resume)")
        key = (tuple(prompt), gen_len, block_len, k, top_m, temperature)
        if cache is not None and key in cache:
            found = cache[key]
        else:
            found = span_state(adapter, prompt, gen_len, block_len, k, temperature)
            if found is not None:
                x, s, e = found
                valid = torch.ones_like(x, dtype=torch.bool)
                attn, pos = full_mask(valid), position_ids(valid)
                found = (x, attn, pos, s, e) + true_joint(adapter, x, attn, pos, s, e, k, top_m, temperature)
            if cache is not None:
                cache[key] = found
        if found is None:
            continue
        x, attn, pos, s, e, paths, Pt = found
        tv, kl = tv_kl(Pt, rule_prob(adapter, x, attn, pos, s, e, paths, temperature, None))
        out["tv_marginal"].append(tv)
        out["kl_marginal"].append(kl)
        out["coverage"].append(float(Pt.sum()))
        if sampler is not None:
            tv, kl = tv_kl(Pt, rule_prob(adapter, x, attn, pos, s, e, paths, temperature, sampler))
            out["tv"].append(tv)
            out["kl"].append(kl)
    if sampler is None:
        out["tv"], out["kl"] = list(out["tv_marginal"]), list(out["kl_marginal"])
    return out


def summarize(metrics: dict[str, list[float]]) -> dict[str, float]:
    return {name: (sum(v) / len(v) if v else math.nan) for name, v in metrics.items()}
