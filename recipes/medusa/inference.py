"""Medusa bench / decode methods from an exported checkpoint.

Rows: ``greedy`` (the base with its KV cache: the reference), ``medusa`` (the checkpoint's
tree, greedy acceptance: output identical to greedy), ``medusa-typical`` (typical acceptance,
eps 0.09, alpha 0.3) and ``medusa-chain`` (a top-1 chain over all heads: what vLLM proposes).
"""
from __future__ import annotations

import functools

DEFAULT_METHODS = ["greedy", "medusa"]
DEFAULT_BATCH_SIZE = 1
"""Draft heads trade extra tokens per forward for fewer forwards: a win where a forward costs the
same for 1 or 25 tokens (single-stream, latency-bound decoding), not at large batch on a CPU."""


def load_heads(ckpt):
    """(MedusaHeads with the checkpoint's weights, its "medusa" section, TreeSpec)."""
    from accel.decoding.checkpoint import CheckpointError
    from accel.decoding.tree import TreeSpec
    from accel.recipes.medusa.heads import MedusaHeads
    s = ckpt.accel.get("medusa")
    if not s:
        raise CheckpointError(f"{ckpt.path} has no \"medusa\" section; re-export it with `accel export RUN --out DIR`")
    try:
        state = ckpt.tensors(s["heads_file"]) if s.get("heads_file") else ckpt.tensors()  # base in the ckpt
        heads = MedusaHeads.from_state_dict(s, state)
        tree = TreeSpec.from_json(s["tree"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{ckpt.path}: medusa heads do not match the checkpoint config "
                              f"({str(e).splitlines()[0]}); re-export the checkpoint") from None
    return heads.eval(), s, tree


def _medusa(adapter, prompts, gen_len, drafter, tree, acceptance="greedy"):
    from accel.decoding.tree import generate_tree
    w, hw = next(adapter.model.parameters()), next(drafter.heads.parameters())
    if (hw.device, hw.dtype) != (w.device, w.dtype):  # moving is a module walk: not on every call
        drafter.heads.to(device=w.device, dtype=w.dtype)
    return generate_tree(adapter, drafter, tree, prompts, max_new_tokens=gen_len, acceptance=acceptance)


def auto_tree(adapter, drafter, acc, quiet: bool = False):
    """The tree maximising expected tokens/s on this device (`accel.decoding.tree_size`)."""
    import sys

    from accel.decoding.tree_size import choose_tree_nodes, measure_step_costs
    from accel.recipes.medusa.tree_build import build_tree, expected_accept_length
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


def bench_methods(ckpt, adapter) -> dict:
    """{name: fn(adapter, prompts, gen_len) -> DecodeResult}.

    A checkpoint exported with tree_nodes 0 (auto) gets its tree here, sized for this device.
    """
    from accel.decoding.methods import get_method
    from accel.decoding.tree import TreeSpec
    from accel.recipes.medusa.heads import MedusaDrafter
    heads, s, tree = load_heads(ckpt)
    drafter = MedusaDrafter(heads)  # one for every method: it lays the head weights out once
    if int(s.get("tree_nodes", -1)) == 0:
        tree, _ = auto_tree(adapter, drafter, s["head_accuracy"])
    out = {"greedy": get_method("greedy", "ar")}
    for name, tr, acc in [("medusa", tree, "greedy"), ("medusa-typical", tree, "typical"),
                          ("medusa-chain", TreeSpec.chain(heads.num_heads), "greedy")]:
        fn = functools.partial(_medusa, drafter=drafter, tree=tr, acceptance=acc)
        fn.help = f"Medusa: {heads.num_heads} heads, {tr.num_nodes}-node tree, {acc} acceptance"
        out[name] = fn
    return out
