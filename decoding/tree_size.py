"""Choosing a draft tree's size for the device it decodes on: expected tokens per SECOND, not per forward.

Tokens per forward only grow with the tree, but a verification forward over N+1 tokens is not
free: on a GPU it costs about what 1 token costs up to some width, on a CPU it grows with N
(on SmolLM2-135M a 48-node tree costs several times a 1-token step). So the size is chosen
from two measurements: the heads' held-out accuracies (the expected accepted length of the
best N-node tree, `expected(N)`) and the wall time of one decode step with an N-node tree on
this device (`measure_step_costs`: a short real `generate_tree` run per size, prefill
subtracted). The chosen N maximises expected(N) / cost(N). A fixed size (`tree_nodes`) skips
all of this.
"""
from __future__ import annotations

import time
from typing import Callable

SIZES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)


def measure_step_costs(adapter, drafter, tree_for: Callable[[int], object], sizes=SIZES, prompt_len: int = 128,
                       steps: int = 12, seed: int = 0) -> dict[int, float]:
    """{N: seconds per decode step (draft + verify + accept) with tree_for(N)}, batch 1, on adapter's device.

    A random prompt: the drafts are then rarely accepted, so `steps` new tokens take ~`steps` forwards,
    each a full step; the best of two runs per size (the other processes on a shared CPU add noise).
    """
    import torch

    from accel.decoding.tree import generate_tree
    g = torch.Generator().manual_seed(seed)
    vocab = adapter.model.get_output_embeddings().weight.shape[0]
    eos = set(adapter.eos_ids)
    prompt = [t for t in torch.randint(0, vocab, (prompt_len * 2,), generator=g).tolist() if t not in eos][:prompt_len]

    def timed(tree, n_new):
        if torch.cuda.is_available() and str(adapter.device).startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = generate_tree(adapter, drafter, tree, [prompt], max_new_tokens=n_new)
        if torch.cuda.is_available() and str(adapter.device).startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0, int(res.nfe[0])

    costs = {}
    with torch.no_grad():
        smallest = tree_for(min(sizes))
        timed(smallest, 4)  # warm-up
        prefill = min(timed(smallest, 1)[0] for _ in range(2))
        for n in sizes:
            tree = tree_for(n)
            timed(tree, 2)
            best = None
            for _ in range(2):
                sec, nfe = timed(tree, steps)
                per = max(sec - prefill, 1e-9) / max(1, nfe - 1)
                best = per if best is None else min(best, per)
            costs[n] = best
    return costs


def choose_tree_nodes(expected: Callable[[int], float], costs: dict[int, float]) -> tuple[int, list[dict]]:
    """(best N, table of {nodes, expected_tokens_per_step, seconds_per_step, expected_tokens_per_s})."""
    table = []
    for n, sec in sorted(costs.items()):
        e = float(expected(n))
        table.append({"nodes": n, "expected_tokens_per_step": e, "seconds_per_step": sec,
                      "expected_tokens_per_s": e / sec if sec > 0 else 0.0})
    best = max(table, key=lambda r: r["expected_tokens_per_s"])
    return best["nodes"], table


def auto_tree(adapter, drafter, acc, quiet: bool = False):
    """(tree, measured table): the tree of the size maximising expected tokens/s on this device, built
    from the heads' measured accuracies `acc` (Medusa, Hydra: any drafter with `.heads`)."""
    import sys

    from accel.decoding.tree_build import build_tree, expected_accept_length
    trees = {}

    def tree_for(n):
        return trees.setdefault(n, build_tree(acc, n))
    w, hw = next(adapter.model.parameters()), next(drafter.heads.parameters())
    if (hw.device, hw.dtype) != (w.device, w.dtype):
        drafter.heads.to(device=w.device, dtype=w.dtype)
    costs = measure_step_costs(adapter, drafter, tree_for)
    n, table = choose_tree_nodes(lambda k: expected_accept_length(acc, tree_for(k)), costs)
    if not quiet:
        sizes = ", ".join(f"{r['nodes']}: {r['expected_tokens_per_step']:.2f} @ {r['seconds_per_step'] * 1e3:.0f}"
                          for r in table)
        print(f"[accel] tree size {n}: the most expected tokens/s on this device "
              f"(nodes: expected tokens/step @ ms/step: {sizes})", file=sys.stderr)
    return tree_for(n), table
