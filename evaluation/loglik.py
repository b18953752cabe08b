"""loglikelihood for lm-eval's multiple-choice tasks: exact for AR models, the masked-diffusion ELBO
estimated by Monte Carlo for dLLMs (the estimate LLaDA's own lm-eval harness reports), and which
methods cannot score at all.

**AR**: one forward over context + continuation; log p is the sum of the continuation's token
log-probs, and "greedy" says whether every continuation token is the argmax.

**dLLM** (LLaDA, Dream, the built-in dLLM): for a continuation of L tokens after the context,

    log p(cont | ctx) >= E_{t, mask} [ (1/t) * sum over masked positions of log p(x_j | noisy sequence) ]

where a noisy sequence masks m of the L continuation tokens (never the context) and t = m / L. It
is estimated over a fixed number of samples (`samples`, LLaDA's mc_num, 128 by default), `batch`
of them per forward. Within a batch the mask counts are stratified as LLaDA's harness draws them —
one uniform m_0 in 1..L, then m_i = round(m_0 + i * L / batch) wrapped into 1..L — and each row masks
m_i positions chosen uniformly. Every request draws from a generator seeded with `seed`, so a
request's estimate does not depend on the order or batching of the others, and two choices of
the same length see the same masks (common random numbers: less variance in their comparison).
"greedy" follows LLaDA's suffix check: from the fully masked continuation, unmask one token per
forward (the most confident), and compare with the continuation.

**Cannot score**: a method that decodes with a model whose likelihood is not the one above — a
D2F student, which attends block-causally over partly decoded blocks (its checkpoint's own rows).
"""
from __future__ import annotations

import torch

from accel.decoding.methods import available
from accel.decoding.target import Target
from accel.models.masks import full_mask, position_ids

MC_SAMPLES = 128
"""Monte Carlo samples per request (LLaDA's mc_num for its multiple-choice tables)."""
MC_BATCH = 32
"""Samples per forward (LLaDA's batch_size); `samples` must be a multiple of it (or smaller)."""
MC_SEED = 1234
"""LLaDA's harness seeds once with 1234; here every request starts from it."""
BLOCK_CAUSAL_RECIPES = ("d2f",)
"""Recipes whose own rows decode with a block-causal student (any family, marked in config or not)."""


def cannot_score(target: Target, method: str) -> str | None:
    """Why `method` on the described or loaded `target` cannot score loglikelihood requests (None: it can).
    A checkpoint's rows named as the baselines decode with its undistilled teacher, and score with it."""
    own = (method in target.offered or method in target.recipe_methods) and method not in available(target.kind)
    config = getattr(target.checkpoint, "config", None) or {}
    attention = (config.get("accel_dllm") or {}).get("attention") if isinstance(config, dict) else None
    if own and (target.recipe in BLOCK_CAUSAL_RECIPES or attention == "block-causal"):
        return (f"its model attends block-causally over partly decoded blocks ({target.recipe or 'block-causal'}), "
                "which has no likelihood accel can estimate; score with the checkpoint's teacher rows "
                "(-m vanilla) or use a generate_until task")
    return None


@torch.no_grad()
def ar_loglikelihood(adapter, ctx: list[int], cont: list[int]) -> tuple[float, bool, int]:
    """(log p(cont | ctx), whether greedy decoding produces cont, forwards): exact, one forward."""
    ids = torch.tensor([ctx + cont], device=adapter.device)
    logits = adapter.model(input_ids=ids).logits[0, len(ctx) - 1:-1].float()
    logits = adapter.decodable(logits).log_softmax(-1)
    want = torch.tensor(cont, device=logits.device)
    return float(logits.gather(-1, want[:, None]).sum()), bool((logits.argmax(-1) == want).all()), 1


def mask_counts(first: int, length: int, batch: int) -> torch.Tensor:
    """How many of `length` tokens each of `batch` rows masks: stratified from `first` (1..length),
    spread evenly around 1..length."""
    m = torch.round(first + torch.arange(batch, dtype=torch.float64) * (length / batch)).long()
    return (m - 1) % length + 1


def _logits(adapter, x: torch.Tensor) -> torch.Tensor:
    valid = torch.ones_like(x, dtype=torch.bool)
    logits, _ = adapter.dllm_logits(x, full_mask(valid), position_ids(valid))
    return logits


@torch.no_grad()
def dllm_elbo(adapter, ctx: list[int], cont: list[int], samples: int = MC_SAMPLES, batch: int = MC_BATCH,
              seed: int = MC_SEED) -> tuple[float, int]:
    """(the Monte Carlo ELBO estimate of log p(cont | ctx), forwards): `samples` noisy copies of the
    sequence, `batch` per forward (module docstring)."""
    L, P = len(cont), len(ctx)
    batch = min(batch, samples)
    g = torch.Generator().manual_seed(int(seed))
    seq = torch.tensor(ctx + cont, device=adapter.device)
    target = seq[P:]
    total, rows, forwards = 0.0, 0, 0
    while rows < samples:
        b = min(batch, samples - rows)
        m = mask_counts(int(torch.randint(1, L + 1, (), generator=g)), L, b)
        order = torch.rand(b, L, generator=g).argsort(1)  # a uniform permutation per row
        masked = (order < m[:, None]).to(adapter.device)  # m_i uniformly chosen positions
        x = seq.repeat(b, 1)
        x[:, P:] = torch.where(masked, torch.full_like(masked, adapter.mask_id, dtype=torch.long), target)
        logp = _logits(adapter, x)[:, P:].float().log_softmax(-1)
        tok_logp = logp.gather(-1, target.expand(b, L)[..., None]).squeeze(-1)  # [b, L]
        t = (m.to(tok_logp) / L)[:, None]
        total += float((tok_logp * masked / t).sum())
        rows += b
        forwards += b
    return total / samples, forwards


@torch.no_grad()
def dllm_greedy(adapter, ctx: list[int], cont: list[int]) -> tuple[bool, int]:
    """(whether LLaDA's one-token-per-step low-confidence decode of a fully masked continuation gives
    `cont`, forwards): L forwards for L tokens."""
    P, L = len(ctx), len(cont)
    x = torch.tensor([ctx + [adapter.mask_id] * L], device=adapter.device)
    for _ in range(L):
        masked = x[0] == adapter.mask_id
        probs = _logits(adapter, x)[0].float().softmax(-1)
        conf, best = probs.max(-1)
        conf = torch.where(masked, conf, torch.full_like(conf, -1.0))
        j = int(conf.argmax())
        x[0, j] = best[j]
    return bool((x[0, P:] == torch.tensor(cont, device=x.device)).all()), L
