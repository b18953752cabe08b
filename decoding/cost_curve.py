"""The target's cost curve and the draft shape it makes fastest (issue 28).

A verification forward over k new tokens costs c(k) seconds: on a GPU about c(1) up to dozens of
tokens, on a CPU c(2), c(3) ~1.1 c(1) and c(5) ~1.5 c(1) (SmolLM2-135M, fp32). `cost_curve` times
the target's k-token forward (body + output projection, on a KV-cached prefix, the cache cropped back
after each) for k = 1..max_k, round-robin `repeats` times, keeps each k's fastest and makes the curve
non-decreasing (a longer forward is never cheaper; a dip is noise). It is measured once per (model,
machine, dtype, threads, device) and kept on disk (``~/.cache/accel/cost_curves/``; ``ACCEL_CACHE_DIR``
moves it).

`choose_shape` then picks, from the drafter's held-out acceptance (per depth, per top-k rank), the
draft shape with the most expected tokens per second:

    expected tokens per step(shape) / (c(nodes + 1) + draft seconds(shape))

over top-1 chains of every depth and the best tree (`tree_build.build_tree`) of every size it is
offered. Greedy decoding makes 1 token per c(1), so the expected speedup is tokens/step * c(1) /
step seconds. On a flat (GPU) curve the widest tree wins; on a CPU curve a chain of 1-2 drafts.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from accel.decoding.tree import TreeSpec, _split_model, generate_tree
from accel.decoding.tree_build import build_tree, chain_accept_length, expected_accept_length
from accel.models.kv import cache_kwargs, output_cache

TREE_SIZES = (4, 8, 16, 24, 32, 48, 64)
"""Tree sizes (candidate nodes) `choose_shape` considers next to the chains."""


def cache_dir() -> Path:
    return Path(os.environ.get("ACCEL_CACHE_DIR") or Path.home() / ".cache" / "accel") / "cost_curves"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(model, device=None) -> dict:
    """What a cost curve depends on: the model (its config and size), the machine, dtype, threads, device,
    and the attention implementation (`accel.models.attention`: it moves c(2)/c(1) by 0.1 on a CPU)."""
    p = next(model.parameters())
    dev = torch.device(device) if device is not None else p.device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    cfg = model.config.to_dict() if hasattr(model.config, "to_dict") else dict(vars(model.config))
    cfg.pop("_name_or_path", None)  # the same model imported into another directory costs the same
    cfg = json.dumps(cfg, sort_keys=True, default=str)
    return {"model": hashlib.sha1(cfg.encode()).hexdigest()[:12], "params": sum(x.numel() for x in model.parameters()),
            "machine": name, "cpus": os.cpu_count(), "dtype": str(p.dtype).replace("torch.", ""),
            "threads": torch.get_num_threads(), "device": dev.type, "torch": torch.__version__.split("+")[0],
            "attention": getattr(model.config, "_attn_implementation", None)}


def _key(fp: dict) -> str:
    return hashlib.sha1(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


@torch.no_grad()
def measure_forward_costs(model, max_k: int, prefix: int = 120, repeats: int = 5, seed: int = 0) -> list[float]:
    """[c(1), ..., c(max_k)]: seconds of one forward of k new tokens after a `prefix`-token KV cache, body
    and output projection (what a verification runs), batch 1; the fastest of `repeats` round-robin passes
    (other processes on a shared CPU only ever add time, so the minimum is the least disturbed), made
    non-decreasing in k by `monotone`."""
    body, head = _split_model(model)
    p = next(model.parameters())
    vocab = head.weight.shape[0]
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (1, prefix + max_k), generator=g).to(p.device)
    cuda = p.device.type == "cuda"
    cache = output_cache(body(input_ids=ids[:, :prefix], use_cache=True, **cache_kwargs(body, DynamicCache())))

    def once(k):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        o = body(input_ids=ids[:, prefix:prefix + k], use_cache=True, **cache_kwargs(body, cache))
        head(o.last_hidden_state)
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        cache.crop(-k)
        return dt
    for k in (1, max_k):
        once(k)  # warm-up
    samples: dict[int, list[float]] = {k: [] for k in range(1, max_k + 1)}
    for _ in range(repeats):
        for k in samples:
            samples[k].append(once(k))
    return monotone([min(samples[k]) for k in samples])


def monotone(xs: list[float]) -> list[float]:
    """The non-decreasing sequence closest to `xs` in squared error (pool adjacent violators): one slow
    outlier is averaged with its neighbours instead of raising every longer forward's cost."""
    blocks: list[list[float]] = []  # [sum, count]
    for x in xs:
        blocks.append([x, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, n = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
    return [s / n for s, n in blocks for _ in range(n)]


STALE = 1.25
"""A stored curve whose one-token forward is more than this factor off a fresh probe's is measured again."""
PROBE_K = 3
"""The probe times forwards of 1..PROBE_K new tokens: the shape of the curve where CPU chains live."""
STALE_SHAPE = 0.15
"""... or whose c(PROBE_K) / c(1) is more than this far from the probe's."""


def cost_curve(model, max_k: int, refresh: bool = False, measure=measure_forward_costs, **kw) -> list[float]:
    """The cached cost curve [c(1) .. c(max_k)] of `model` on this machine (measured and stored when absent,
    shorter than `max_k`, `refresh`, or stale). `measure(model, max_k, **kw)` is the timing (tests pass a fake).

    Stale: a stored curve is checked against a probe of the forwards of 1..`PROBE_K` new tokens
    (`measure(model, PROBE_K)`, about a second); its one-token forward off by more than `STALE` either way, or
    its c(PROBE_K) / c(1) more than `STALE_SHAPE` from the probe's, the machine is not what it was when the
    curve was measured (another job was running then or is now) and the curve is measured again. A curve
    kept from a loaded machine once priced a 3-token forward at 1.63 one-token forwards where the idle
    machine measures 1.11, and the planner chose shapes for a machine that no longer existed; another, from
    three jobs on two cores, priced a 2-token forward at 1.39 with a one-token forward only 20% slow."""
    fp = fingerprint(model)
    path = cache_dir() / f"{_key(fp)}.json"
    if not refresh and path.is_file():
        try:
            data = json.loads(path.read_text())
            costs = [float(c) for c in data["costs"]]
        except (OSError, ValueError, KeyError, TypeError):
            costs = []  # a damaged file is measured again
        if len(costs) >= max_k:
            k = min(PROBE_K, len(costs))
            probe = [float(c) for c in measure(model, k, **kw)]
            if costs[0] / STALE <= probe[0] <= costs[0] * STALE and \
                    abs(probe[k - 1] / probe[0] - costs[k - 1] / costs[0]) <= STALE_SHAPE:
                return costs[:max_k]
    costs = [float(c) for c in measure(model, max_k, **kw)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fingerprint": fp, "costs": costs, "measured": time.time()}, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: measured, not kept
    return costs


def cost_at(costs: list[float], k: int) -> float:
    """c(k), extrapolated linearly past the measured curve."""
    if k <= len(costs):
        return costs[k - 1]
    slope = (costs[-1] - costs[0]) / max(1, len(costs) - 1)
    return costs[-1] + slope * (k - len(costs))


def _draft_seconds(draft_cost, depth: int, nodes: int) -> float:
    if draft_cost is None:
        return 0.0
    return float(draft_cost(depth, nodes))


def choose_shape(acc: list[list[float]], costs: list[float], sizes=TREE_SIZES, draft_cost=None,
                 max_depth: int | None = None) -> tuple[TreeSpec, list[dict]]:
    """(the shape with the most expected tokens/s, the table of every shape considered).

    acc[d][c]: held-out probability that depth d+1's c-th ranked draft is the target's token (acc[d][0]:
    top-1). Chains of depth 1..len(acc) (or `max_depth`) and trees of `sizes` nodes (only where acc has
    more than one rank). draft_cost(depth, nodes) -> seconds of drafting that shape (None: free).
    Each row: {shape, nodes, depth, expected_tokens_per_step, seconds_per_step, expected_speedup}."""
    if not acc or not acc[0]:
        raise ValueError("choose_shape needs at least one depth with one measured rank")
    depth_cap = min(len(acc), max_depth or len(acc))
    c1 = costs[0]
    table = []

    def add(kind, tree, e):
        sec = cost_at(costs, tree.num_nodes + 1) + _draft_seconds(draft_cost, tree.max_depth, tree.num_nodes)
        table.append({"shape": kind, "nodes": tree.num_nodes, "depth": tree.max_depth, "tree": tree,
                      "expected_tokens_per_step": e, "seconds_per_step": sec,
                      "expected_speedup": e * c1 / sec if sec > 0 else 0.0})
    for d in range(1, depth_cap + 1):
        add(f"chain-{d}", TreeSpec.chain(d), chain_accept_length([a[0] for a in acc[:d]]))
    if max(len(a) for a in acc) > 1:
        trimmed = [list(a) for a in acc[:depth_cap]]
        for n in sizes:
            tree = build_tree(trimmed, n)
            if tree.num_nodes > tree.max_depth:  # not a chain (those are above)
                add(f"tree-{tree.num_nodes}", tree, expected_accept_length(trimmed, tree))
    best = max(table, key=lambda r: (r["expected_speedup"], -r["nodes"]))
    return best["tree"], table


def choose_chain(top1: list[float], costs: list[float], draft_cost=None) -> tuple[int, float]:
    """(chain depth with the most expected tokens/s, its expected speedup over greedy) from per-depth top-1."""
    tree, table = choose_shape([[a] for a in top1], costs, sizes=(), draft_cost=draft_cost)
    row = next(r for r in table if r["tree"] is tree)
    return tree.num_nodes, row["expected_speedup"]


def expected_speedup(acc: list[list[float]], tree: TreeSpec, costs: list[float], draft_cost=None) -> float:
    """Expected tokens/s of verifying `tree` each step over greedy's, on the curve `costs`."""
    e = expected_accept_length(acc, tree)
    sec = cost_at(costs, tree.num_nodes + 1) + _draft_seconds(draft_cost, tree.max_depth, tree.num_nodes)
    return e * costs[0] / sec


def format_table(table: list[dict], costs: list[float]) -> str:
    """One log line per shape: expected tokens/step, ms/step, expected speedup."""
    return "; ".join(f"{r['shape']}: {r['expected_tokens_per_step']:.2f} tok @ {r['seconds_per_step'] * 1e3:.1f} ms "
                     f"= {r['expected_speedup']:.2f}x" for r in table) + \
        f" (greedy {costs[0] * 1e3:.1f} ms/token)"


def target_macs(model) -> int:
    """Multiply-adds per token of the target's forward, counted as its matrices' sizes (at batch 1 a CPU
    forward is bound by reading them): every 2-D weight but the input embedding, the output projection
    counted even when tied to it."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    seen, total = set(), 0
    for p in model.parameters():
        if p.dim() == 2 and p.data_ptr() not in seen and p is not emb:
            seen.add(p.data_ptr())
            total += p.numel()
    if head.data_ptr() not in seen or head is emb:
        total += head.numel()
    return total


def matrix_macs(params) -> int:
    """Multiply-adds per row of the 2-D weights among `params` (a draft's per-level cost)."""
    return sum(p.numel() for p in params if p.dim() == 2)


def draft_cost_from_weights(costs: list[float], target: int, per_level: int, once: int = 0, per: str = "depth"):
    """draft_cost(depth, nodes) in seconds, priced as a fraction of a one-token target forward by the
    weights drafting reads: `once` per step, `per_level` per level (`per="depth"`: heads that draft a
    level in one pass whatever its width, Medusa/Hydra) or per node (`per="nodes"`: a draft layer run
    per node, EAGLE-3)."""
    c1 = costs[0]

    def cost(depth: int, nodes: int) -> float:
        return c1 * (once + per_level * (depth if per == "depth" else nodes)) / max(1, target)
    return cost


def plan_shapes(model, acc: list[list[float]], per_level: int, once: int = 0, per: str = "depth",
                max_nodes: int = 64, label: str = "", quiet: bool = False, max_depth: int | None = None) -> dict:
    """The cost curve of `model` (cached) and, from the drafter's held-out acceptance `acc` [depth][rank],
    the best shape overall and the best chain. Returns {tree, chain (depth), costs, table, draft_cost,
    target_macs}; logs the choice to stderr unless `quiet`."""
    sizes = tuple(n for n in TREE_SIZES if n <= max_nodes)
    costs = cost_curve(model, max_nodes + 1)
    tm = target_macs(model)
    dc = draft_cost_from_weights(costs, tm, per_level, once, per)
    tree, table = choose_shape(acc, costs, sizes=sizes, draft_cost=dc, max_depth=max_depth)
    chains = [r for r in table if r["shape"].startswith("chain")]
    chain = max(chains, key=lambda r: (r["expected_speedup"], -r["nodes"]))
    if not quiet:
        c = ", ".join(f"{k}: {x / costs[0]:.2f}" for k, x in enumerate(costs, start=1) if k in (1, 2, 3, 5, 8, 16, 49))
        print(f"[accel] {label}cost curve (k new tokens: x a one-token forward of {costs[0] * 1e3:.1f} ms, "
              f"{torch.get_num_threads()} threads): {c}; drafting a level ~{per_level / tm:.1%} of a forward", file=sys.stderr)
        best = next(r for r in table if r["tree"] is tree)
        print(f"[accel] {label}best shape {best['shape']} (expected {best['expected_speedup']:.2f}x greedy), best chain "
              f"{chain['shape']} ({chain['expected_speedup']:.2f}x); {format_table(table, costs)}", file=sys.stderr)
    return {"tree": tree, "chain": chain["depth"], "costs": costs, "table": table, "draft_cost": dc,
            "target_macs": tm}


def decode_tree(adapter, prompts, gen_len, drafter, tree, acceptance="greedy", expected=None, stop=None):
    """The draft methods' decode (Medusa, Hydra, EAGLE-3 rows): `generate_tree` with the drafter and tree the
    checkpoint bound, the rows ending at `stop` strings, and the plan's `expected` speedup as a row metric (a
    gated chain's own `modeled_speedup` in its place, `accel.decoding.gate`)."""
    res = generate_tree(adapter, drafter, tree, prompts, max_new_tokens=gen_len, acceptance=acceptance, stop=stop)
    modeled = getattr(drafter, "modeled_speedup", None)  # a gated chain prices the steps it took on the curve
    if modeled is not None:
        expected = modeled()
    return with_expected(res, expected)


def level_seconds(plan: dict) -> float:
    """Seconds of drafting one more chain level in `plan` (`plan_shapes`'s result)."""
    dc = plan["draft_cost"]
    return float(dc(2, 2) - dc(1, 1))


def with_expected(res, speedup: float | None):
    """`res` (a DecodeResult) with the row metric ``expected_speedup`` (one value per prompt), which `accel
    bench` shows next to the measured speedup."""
    if speedup is None:
        return res
    extra = dict(res.extra or {})
    rm = dict(extra.get("row_metrics") or {})
    rm["expected_speedup"] = [float(speedup)] * len(res.tokens)
    extra["row_metrics"] = rm
    res.extra = extra
    return res
