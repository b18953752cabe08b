"""Choosing τ on held-out prompts: the lowest-NFE threshold that decodes as well as the teacher.

The filter's sigmoid outputs are not calibrated across teachers (the built-in one's are
overconfident), so the shipped τ is picked where it matters, in decoding: for each τ of a grid,
decode the held-out prompts (whose oracle steps the filter never trained on) with Learn2PD and
compare with the reference one-token-per-step decode. With a scorer (suite prompts: exact match
or validity) the smallest τ whose accuracy is within `tolerance` of the reference's wins (of the
best τ's, when no τ reaches the reference: a gap that no threshold closes is not τ's); without
one (user prompts), the smallest τ whose agreement with the reference outputs is within
`tolerance` of the best agreement on the grid. Agreement alone would be too strict: on tasks
with several valid answers a batch-size-level numeric difference flips between equally valid
outputs, so even the most conservative τ agrees on only ~88% of the built-in held-out prompts.
Never looks at the bench's test split.
"""
from __future__ import annotations

from typing import Callable

from accel.recipes.learn2pd.decode import generate_learn2pd
from accel.core.progress import phase_bar
from accel.recipes.learn2pd.oracle import reference_canvas
from accel.trainers.preempt import poll

TAU_GRID = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995)


def calibrate_tau(adapter, filt, prompts: list[list[int]], gen_len: int, eotp: bool = True,
                  tolerance: float = 0.0, grid=TAU_GRID, batch_size: int = 32,
                  scorer: Callable[[int, str], bool] | None = None,
                  progress: bool = True, cache: str | None = None,
                  full_table: bool = False) -> tuple[float, list[dict]]:
    """(chosen τ, [{tau, agreement, accuracy?, nfe}] per τ decoded, smallest first).

    scorer(i, text) -> bool scores prompt i's output; the reference's accuracy is reported as
    the row with tau = 1.0 (one token per step). It decodes every prompt once for the reference,
    then once per τ from the smallest up, which on a real-size model takes minutes: `progress`
    shows a bar over those decodes. cache (None, 'prefix', 'dual') is the KV cache of the
    reference and of every Learn2PD decode (`oracle.resolve_cache`).

    Unless full_table, the grid stops at the first τ that decodes the prompts as accurately as
    the reference (without a scorer: agrees with it on every prompt): no larger τ can be chosen
    then (the bar is the reference's accuracy, or 1.0 agreement, less the tolerance, and every
    smaller τ has been decoded), and the larger τ are the ones that cost the most forwards.
    """
    if not prompts:
        raise ValueError("τ calibration needs at least one held-out prompt")
    chunks = [prompts[i:i + batch_size] for i in range(0, len(prompts), batch_size)]
    with phase_bar("τ calibration", len(prompts) * (len(grid) + 1), progress) as advance:
        return _calibrate(adapter, filt, chunks, gen_len, eotp, tolerance, sorted(grid), scorer, advance, cache,
                          full_table)


def _calibrate(adapter, filt, chunks, gen_len, eotp, tolerance, grid, scorer, advance, cache, full_table):
    refs = []
    for c in chunks:
        refs.append(reference_canvas(adapter, c, gen_len, filt.block_len, cache=cache)[1])
        advance(len(c))
    ref_tok = [t for r in refs for t in r.tokens]
    ref_txt = [t for r in refs for t in r.texts]

    def acc(texts):
        return round(sum(scorer(i, t) for i, t in enumerate(texts)) / len(texts), 4) if scorer else None

    ref_acc = acc(ref_txt)
    table = []
    for k, tau in enumerate(grid):
        poll("the trained filter's checkpoint (τ calibration reruns on resume)")
        toks, txts, nfe = [], [], []
        for c in chunks:
            res = generate_learn2pd(adapter, c, gen_len, filt, tau=tau, eotp=eotp, cache=cache)
            advance(len(c))
            toks += res.tokens
            txts += res.texts
            nfe += res.nfe
        row = {"tau": tau, "agreement": round(sum(a == b for a, b in zip(toks, ref_tok)) / len(ref_tok), 4),
               "nfe": round(sum(nfe) / len(nfe), 3)}
        if scorer:
            row["accuracy"] = acc(txts)
        table.append(row)
        if not full_table and matches_reference(row, ref_acc):
            advance(len(ref_tok) * (len(grid) - k - 1))  # the larger τ are not decoded: the bar ends full
            break
    tau = choose(table, ref_acc, tolerance)
    if scorer:
        table.append({"tau": 1.0, "agreement": 1.0, "accuracy": ref_acc, "nfe": float(gen_len)})
    return tau, table


def matches_reference(row: dict, ref_acc: float | None) -> bool:
    """Whether τ's row decodes the held-out prompts as well as the reference: its accuracy reaches the
    reference's (ref_acc: with a scorer), or (None: without one) it agrees with it on every prompt."""
    return row["accuracy"] >= ref_acc - 1e-9 if ref_acc is not None else row["agreement"] >= 1.0 - 1e-9


def choose(table: list[dict], ref_acc: float | None, tolerance: float) -> float:
    """The smallest τ of `table` (smallest first) that clears the bar: with a scorer, the reference's
    accuracy, or the best any τ reaches if that is lower, less the tolerance; without one, the best
    agreement less the tolerance. Once a row `matches_reference`, no row after it can change this."""
    if ref_acc is not None:
        bar = min(ref_acc, max(r["accuracy"] for r in table)) - tolerance
        return next(r["tau"] for r in table if r["accuracy"] >= bar - 1e-9)
    bar = max(r["agreement"] for r in table) - tolerance
    return next(r["tau"] for r in table if r["agreement"] >= bar - 1e-9)
