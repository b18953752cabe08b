"""Choosing τ on held-out prompts: the lowest-NFE threshold whose decodes still match the teacher's.

The filter's sigmoid outputs are not calibrated across teachers (the built-in one's are
overconfident), so the shipped τ is picked where it matters, in decoding: for each τ of a grid,
decode the held-out prompts (whose oracle steps the filter never trained on) with Learn2PD and
compare with the reference one-token-per-step decode; keep the smallest τ (fewest forwards)
whose agreement is at least `min_agreement`. Label-free, so it works on user prompts too, and
never looks at the bench's test split.
"""
from __future__ import annotations

TAU_GRID = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995)


def calibrate_tau(adapter, filt, prompts: list[list[int]], gen_len: int, eotp: bool = True,
                  min_agreement: float = 0.98, grid=TAU_GRID, batch_size: int = 32) -> tuple[float, list[dict]]:
    """(chosen τ, [{tau, agreement, nfe}] for every τ tried, most permissive first).

    Falls back to the most conservative τ of the grid when none reaches `min_agreement`.
    """
    from accel.recipes.learn2pd.decode import generate_learn2pd
    from accel.recipes.learn2pd.oracle import reference_canvas

    if not prompts:
        raise ValueError("τ calibration needs at least one held-out prompt")
    chunks = [prompts[i:i + batch_size] for i in range(0, len(prompts), batch_size)]
    ref = [t for c in chunks for t in reference_canvas(adapter, c, gen_len, filt.block_len)[1].tokens]
    table = []
    for tau in sorted(grid):
        toks, nfe = [], []
        for c in chunks:
            res = generate_learn2pd(adapter, c, gen_len, filt, tau=tau, eotp=eotp)
            toks += res.tokens
            nfe += res.nfe
        agree = sum(a == b for a, b in zip(toks, ref)) / len(ref)
        table.append({"tau": tau, "agreement": round(agree, 4), "nfe": round(sum(nfe) / len(nfe), 3)})
    ok = [r for r in table if r["agreement"] >= min_agreement]
    return (ok[0]["tau"] if ok else max(grid)), table
