"""Medusa bench / decode methods from an exported checkpoint.

Rows: ``greedy`` (the base with its KV cache: the reference), ``medusa`` (the checkpoint's
tree, greedy acceptance: output identical to greedy), ``medusa-typical`` (typical acceptance,
eps 0.09, alpha 0.3) and ``medusa-chain`` (a top-1 chain over all heads: what vLLM proposes).
"""
from __future__ import annotations

import dataclasses

from accel.recipes.medusa.spec import Spec

DEFAULT_METHODS = ["greedy", "medusa"]
METHODS = {"medusa": "the checkpoint's tree, greedy acceptance (output identical to greedy)",
           "medusa-typical": "the checkpoint's tree, typical acceptance (eps 0.09, alpha 0.3)",
           "medusa-chain": "a top-1 chain over all heads (what vLLM proposes)"}
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


def _medusa(adapter, prompts, gen_len, drafter, tree, acceptance="greedy"):
    from accel.decoding.tree import generate_tree
    w, hw = next(adapter.model.parameters()), next(drafter.heads.parameters())
    if (hw.device, hw.dtype) != (w.device, w.dtype):  # moving is a module walk: not on every call
        drafter.heads.to(device=w.device, dtype=w.dtype)
    return generate_tree(adapter, drafter, tree, prompts, max_new_tokens=gen_len, acceptance=acceptance)


def bench_methods(ckpt, adapter) -> dict:
    """{name: DecodeMethod}.

    A checkpoint exported with tree_nodes 0 (auto) gets its tree here, sized for this device.
    """
    from accel.decoding.methods import DecodeMethod, get_method
    from accel.decoding.tree import TreeSpec
    from accel.recipes.medusa.heads import MedusaDrafter
    heads, s, tree = load_heads(ckpt)
    drafter = MedusaDrafter(heads)  # one for every method: it lays the head weights out once
    if s.tree_nodes == 0:
        from accel.decoding.tree_size import auto_tree
        tree, _ = auto_tree(adapter, drafter, s.head_accuracy)
    out = {"greedy": get_method("greedy", "ar")}
    for name, tr, acc in [("medusa", tree, "greedy"), ("medusa-typical", tree, "typical"),
                          ("medusa-chain", TreeSpec.chain(heads.num_heads), "greedy")]:
        out[name] = DecodeMethod(name, "ar", f"Medusa: {heads.num_heads} heads, {tr.num_nodes}-node tree, "
                                             f"{acc} acceptance", _medusa,
                                 options=dict(drafter=drafter, tree=tr, acceptance=acc))
    return out
