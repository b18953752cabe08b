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

import statistics
import sys
import time
from typing import Callable

import torch

from accel.decoding.ar import generate_greedy
from accel.decoding.tree import generate_tree
from accel.decoding.tree_build import build_tree, expected_accept_length

SIZES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)


def measure_step_costs(adapter, drafter, tree_for: Callable[[int], object], sizes=SIZES, prompt_len: int = 128,
                       steps: int = 12, seed: int = 0, rounds: int = 3) -> dict[int, float]:
    """{N: seconds per decode step (draft + verify + accept) with tree_for(N)}, batch 1, on adapter's device;
    key 0 is plain greedy decoding's seconds per token, the speed a tree has to beat.

    A random prompt: the drafts are then rarely accepted, so `steps` new tokens take ~`steps` forwards,
    each a full step. On a shared CPU other processes make single timings swing by tens of percent, so
    the sizes are timed round-robin `rounds` times (a slow spell hits every size alike), each size keeps
    its median, and the costs are made non-decreasing in N (a bigger tree is never cheaper to verify;
    a dip is noise that would otherwise pick a random size).
    """
    g = torch.Generator().manual_seed(seed)
    vocab = adapter.model.get_output_embeddings().weight.shape[0]
    eos = set(adapter.eos_ids)
    prompt = [t for t in torch.randint(0, vocab, (prompt_len * 2,), generator=g).tolist() if t not in eos][:prompt_len]
    cuda = torch.cuda.is_available() and str(adapter.device).startswith("cuda")

    def timed(tree, n_new):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if tree is None:
            res = generate_greedy(adapter, [prompt], max_new_tokens=n_new)
        else:
            res = generate_tree(adapter, drafter, tree, [prompt], max_new_tokens=n_new)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0, int(res.nfe[0])

    sizes = sorted(sizes)
    tree = {0: None, **{n: tree_for(n) for n in sizes}}
    samples: dict[int, list[float]] = {n: [] for n in tree}
    with torch.no_grad():
        timed(tree[sizes[0]], 4)  # warm-up
        for n in tree:
            timed(tree[n], 2)
        for _ in range(rounds):
            prefill = {t: timed(tree[t], 1)[0] for t in (0, sizes[0])}  # greedy's prefill also projects the prompt
            for n in tree:
                sec, nfe = timed(tree[n], steps)
                samples[n].append(max(sec - prefill[0 if n == 0 else sizes[0]], 1e-9) / max(1, nfe - 1))
    costs, floor = {0: statistics.median(samples[0])}, 0.0
    for n in sizes:
        floor = max(floor, statistics.median(samples[n]))
        costs[n] = floor
    return costs


def choose_tree_nodes(expected: Callable[[int], float], costs: dict[int, float]) -> tuple[int, list[dict]]:
    """(best N, table of {nodes, expected_tokens_per_step, seconds_per_step, expected_tokens_per_s[,
    expected_speedup]}); a key 0 in `costs` (greedy's seconds per token) adds the speedup over greedy."""
    greedy = costs.get(0)
    table = []
    for n, sec in sorted(costs.items()):
        if n == 0:
            continue
        e = float(expected(n))
        row = {"nodes": n, "expected_tokens_per_step": e, "seconds_per_step": sec,
               "expected_tokens_per_s": e / sec if sec > 0 else 0.0}
        if greedy:
            row["expected_speedup"] = row["expected_tokens_per_s"] * greedy
        table.append(row)
    best = max(table, key=lambda r: r["expected_tokens_per_s"])
    return best["nodes"], table


def auto_tree(adapter, drafter, acc, quiet: bool = False):
    """(tree, measured table): the tree of the size maximising expected tokens/s on this device, built
    from the heads' measured accuracies `acc` (Medusa, Hydra: any drafter with `.heads`)."""
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
        best = next(r for r in table if r["nodes"] == n)
        print(f"[accel] tree size {n}: the most expected tokens/s on this device, {best['expected_speedup']:.2f}x "
              f"greedy's ({costs[0] * 1e3:.0f} ms/token; nodes: expected tokens/step @ ms/step: {sizes})",
              file=sys.stderr)
        if best["expected_speedup"] < 1:
            print("[accel] no tree size is expected to beat greedy decoding on this device: a verification "
                  "forward over more tokens costs more here than the heads' accepted tokens save "
                  "(docs/recipes/medusa.md, Tree size)", file=sys.stderr)
    return tree_for(n), table
