"""Medusa bench / decode methods from an exported checkpoint.

Rows: ``greedy`` (the base with its KV cache: the reference), ``medusa`` (the checkpoint's
tree, greedy acceptance: output identical to greedy), ``medusa-typical`` (typical acceptance,
eps 0.09, alpha 0.3) and ``medusa-chain`` (a top-1 chain: what vLLM proposes; its depth the one this machine's cost curve makes
fastest, `accel.decoding.cost_curve`). Greedy-acceptance rows carry ``expected_speedup``, which `accel bench`
prints next to the measured one.
"""
from __future__ import annotations

import dataclasses

from accel.recipes.medusa.spec import Spec

DEFAULT_METHODS = ["greedy", "medusa", "medusa+lookup"]
METHODS = {"medusa": "the checkpoint's tree, greedy acceptance (output identical to greedy)",
           "medusa-typical": "the checkpoint's tree, typical acceptance (eps 0.09, alpha 0.3)",
           "medusa-chain": "a top-1 chain (what vLLM proposes), each step as deep as the heads' confidence pays for on "
                           "this machine's cost curve (accel.decoding.gate)",
           "medusa+lookup": "medusa with context lookup: where the last 2+ tokens occurred before, the tokens that "
                            "followed them are the chain, longer for longer matches (accel.decoding.lookup)"}
"""The checkpoint's own methods (the baselines come from `accel.decoding.methods`)."""
DEFAULT_BATCH_SIZE = 1
"""Draft heads trade extra tokens per forward for fewer forwards: a win where a forward costs the
same for 1 or 25 tokens (single-stream, latency-bound decoding), not at large batch on a CPU."""


def load_heads(ckpt):
    """(MedusaHeads with the checkpoint's weights, its typed `Spec`, TreeSpec)."""
    from accel.decoding.checkpoint import CheckpointError
    from accel.decoding.tree import TreeSpec
    from accel.recipes.medusa.heads import MedusaHeads
    s = ckpt.spec(Spec)
    try:
        state = ckpt.tensors(s.heads_file) if s.heads_file else ckpt.tensors()  # base in the ckpt
        heads = MedusaHeads.from_state_dict(dataclasses.asdict(s), state)
        tree = TreeSpec.from_json(s.tree)
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{ckpt.path}: medusa heads do not match the checkpoint config "
                              f"({str(e).splitlines()[0]}); re-export the checkpoint") from None
    return heads.eval(), s, tree


def _medusa(adapter, prompts, gen_len, drafter, tree, acceptance="greedy", expected=None, stop=None):
    from accel.decoding.cost_curve import decode_tree
    from accel.decoding.gate import innermost
    heads = innermost(drafter).heads  # the Medusa drafter, behind context lookup or a gate or not
    w, hw = next(adapter.model.parameters()), next(heads.parameters())
    if (hw.device, hw.dtype) != (w.device, w.dtype):  # moving is a module walk: not on every call
        heads.to(device=w.device, dtype=w.dtype)
    return decode_tree(adapter, prompts, gen_len, drafter, tree, acceptance, expected, stop)


def plan(adapter, heads, acc, label="medusa: "):
    """The cost-curve plan (`accel.decoding.cost_curve.plan_shapes`) for these heads on this machine: a
    level is one head (its residual blocks and its projection over the draft vocabulary)."""
    from accel.decoding.cost_curve import matrix_macs, plan_shapes
    per_level = matrix_macs(heads.blocks[0].parameters()) + heads.lm_heads[0].weight.numel()
    return plan_shapes(adapter.model, acc, per_level, per="depth", label=label, max_depth=heads.num_heads)


def bench_methods(ckpt, adapter) -> dict:
    """{name: DecodeMethod}.

    A checkpoint exported with tree_nodes 0 (auto) gets its tree here, sized for this device.
    """
    from accel.decoding.methods import DecodeMethod, get_method
    from accel.decoding.tree import TreeSpec
    from accel.recipes.medusa.heads import MedusaDrafter
    from accel.decoding.cost_curve import expected_speedup
    from accel.decoding.gate import GATED, gate_chain
    from accel.decoding.lookup import with_lookup
    heads, s, tree = load_heads(ckpt)
    drafter = MedusaDrafter(heads)  # one for every method: it lays the head weights out once
    p = plan(adapter, heads, s.head_accuracy)
    if s.tree_nodes == 0:  # sized for this machine's cost curve
        tree = p["tree"]
    chain = TreeSpec.chain(p["chain"])  # the chain depth with the most expected tokens/s here
    def method(name, tr, acc):
        # a chain is cut per step where the heads' confidence stops paying (accel.decoding.gate)
        gated = gate_chain(lambda: MedusaDrafter(heads), tr, p, heads.num_heads) if acc == "greedy" else None
        shape = (f"a top-1 chain of up to {gated.max_depth}, {GATED}" if gated is not None else
                 f"{tr.num_nodes}-node {'chain' if tr.num_nodes == tr.max_depth else 'tree'}")
        exp = expected_speedup(s.head_accuracy, tr, p["costs"], p["draft_cost"]) if acc == "greedy" else None
        return DecodeMethod(name, "ar", f"Medusa: {heads.num_heads} heads, {shape}, {acc} acceptance", _medusa,
                            options=dict(drafter=gated or drafter, tree=tr, acceptance=acc, expected=exp))
    out = {"greedy": get_method("greedy", "ar")}
    for name, tr, acc in [("medusa", tree, "greedy"), ("medusa-typical", tree, "typical"),
                          ("medusa-chain", chain, "greedy")]:
        out[name] = method(name, tr, acc)
    out["medusa+lookup"] = with_lookup(method("medusa", tree, "greedy"), p["costs"])
    return out
