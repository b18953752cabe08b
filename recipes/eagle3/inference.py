"""EAGLE-3 bench / decode methods from an exported checkpoint.

Rows: ``greedy`` (the target with its KV cache: the reference), ``eagle3`` (EAGLE-2's dynamic tree
drafted each step: expand the top-8 by cumulative draft log-prob, keep the checkpoint's node budget),
``eagle3-static`` (the checkpoint's static tree, built from held-out per-depth accuracy) and
``eagle3-chain`` (a top-1 chain, what vLLM's EAGLE proposer drafts, up to the trained unroll depth, each
step as deep as the draft's own confidence pays for on this machine's cost curve: `accel.decoding.gate`),
all with greedy acceptance (output identical to greedy); ``eagle3-typical`` is the static
tree with typical acceptance (eps 0.09, alpha 0.3; not identical to greedy).
"""
from __future__ import annotations

from accel.recipes.eagle3.spec import Spec

DEFAULT_METHODS = ["greedy", "eagle3", "eagle3-static", "eagle3-chain", "eagle3-chain+lookup"]
DEFAULT_BATCH_SIZE = 1
DYNAMIC_TOPK = 8
"""Children per expanded node and nodes expanded per level of the dynamic tree (EAGLE-2 uses 10, SGLang 8)."""
"""A draft trades extra tokens per forward for fewer forwards: a win in single-stream,
latency-bound decoding (where a forward costs the same for 1 or 49 tokens), as for Medusa/Hydra."""


METHODS = {"eagle3": "EAGLE-2 dynamic tree each step, greedy acceptance (output identical to greedy)",
           "eagle3-static": "the checkpoint's static tree, greedy acceptance",
           "eagle3-chain": "a top-1 chain (up to the trained unroll depth), each step as deep as the draft's "
                           "confidence pays for on this machine's cost curve, greedy acceptance",
           "eagle3-typical": "the static tree, typical acceptance (eps 0.09, alpha 0.3)",
           "eagle3-chain+lookup": "eagle3-chain with context lookup: where the last 2+ tokens occurred before, the tokens "
                                  "that followed them are the chain, longer for longer matches (accel.decoding.lookup)"}
"""The checkpoint's own methods (the baselines come from `accel.decoding.methods`)."""


def plan(adapter, draft, acc, max_depth, label="eagle3: "):
    """The cost-curve plan (`accel.decoding.cost_curve.plan_shapes`) for this draft on this machine: a step
    runs `fc` over the accepted tokens' features once, then per drafted node one pass of the draft layer (the
    first over the accepted tokens, each later one over a level's parents) and its projection over the
    draft vocabulary."""
    from accel.decoding.cost_curve import matrix_macs, plan_shapes
    per_node = matrix_macs(draft.layers.parameters()) + draft.lm_head.weight.numel()
    once = draft.fc.weight.numel()
    return plan_shapes(adapter.model, acc, per_node, once=once, per="nodes", label=label, max_depth=max_depth)


def load_draft(ckpt, adapter):
    """The checkpoint's `Eagle3Draft` on the adapter's device, checked against the target."""
    from accel.decoding.checkpoint import CheckpointError
    from accel.recipes.eagle3.model import Eagle3Draft
    s = ckpt.spec(Spec)
    mc = adapter.model.config
    emb = adapter.model.get_input_embeddings().weight
    if emb.shape[1] != s.hidden_size or emb.shape[0] != s.vocab_size:
        raise CheckpointError(f"{ckpt.path}: the draft expects hidden size {s.hidden_size} and vocab "
                              f"{s.vocab_size} but the target {ckpt.backbone_target()} has {emb.shape[1]} and "
                              f"{emb.shape[0]}; export against the target it was trained on")
    state = ckpt.tensors(s.draft_file)
    import torch
    draft_ids = state["d2t"] + torch.arange(len(state["d2t"]))
    draft = Eagle3Draft(mc, s.feature_layers, draft_ids)
    missing, unexpected = draft.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("rotary.")]
    if missing or unexpected:
        raise CheckpointError(f"{ckpt.path}: draft weights do not match the \"eagle3\" section (missing "
                              f"{missing[:3]}, unexpected {unexpected[:3]}); re-export the run")
    draft.ttt_steps = s.ttt_steps
    return draft.to(device=adapter.device, dtype=emb.dtype).eval()


def bench_methods(ckpt, adapter) -> dict:
    """{name: DecodeMethod}: greedy, eagle3 (dynamic tree), eagle3-static, eagle3-chain, eagle3-typical."""
    from accel.decoding.methods import DecodeMethod, get_method
    from accel.decoding.tree import TreeSpec
    from accel.recipes.eagle3.drafter import Eagle3Drafter
    from accel.decoding.cost_curve import decode_tree, expected_speedup
    from accel.decoding.gate import GATED, gate_chain
    from accel.decoding.lookup import with_lookup
    draft = load_draft(ckpt, adapter)
    s = ckpt.spec(Spec)
    tree = TreeSpec.from_json(s.tree)
    acc = s.topk_accuracy
    p = plan(adapter, draft, acc, s.ttt_steps) if acc else None
    chain = TreeSpec.chain(p["chain"] if p is not None else s.ttt_steps)  # the fastest depth on this machine

    def exp(tr):
        return expected_speedup(acc, tr, p["costs"], p["draft_cost"]) if p is not None else None
    emb = adapter.model.get_input_embeddings()
    drafter = Eagle3Drafter(draft, emb)
    dynamic = Eagle3Drafter(draft, emb, dynamic=(s.ttt_steps, DYNAMIC_TOPK, tree.num_nodes))

    def row(name, drafter_, tree_, acceptance, help):
        e = exp(tree_) if acceptance == "greedy" else None  # the dynamic row: its static tree's estimate
        return DecodeMethod(name, "ar", help, decode_tree,
                            options=dict(drafter=drafter_, tree=tree_, acceptance=acceptance, expected=e))
    def chain_drafter():  # cut per step where the draft's confidence stops paying (accel.decoding.gate)
        return gate_chain(lambda: Eagle3Drafter(draft, emb), chain, p, s.ttt_steps) or drafter
    chain_help = (f"EAGLE-3 draft, a top-1 chain of up to {s.ttt_steps}, {GATED}, greedy acceptance" if p is not None
                  else f"EAGLE-3 draft, top-1 chain of {chain.num_nodes}, greedy acceptance")
    out = {
        "greedy": get_method("greedy", "ar"),
        "eagle3-static": row("eagle3-static", drafter, tree, "greedy",
                             f"EAGLE-3 draft, {tree.num_nodes}-node static tree, greedy acceptance"),
        "eagle3-chain": row("eagle3-chain", chain_drafter(), chain, "greedy", chain_help),
        "eagle3": row("eagle3", dynamic, tree, "greedy",
                      f"EAGLE-3 draft, EAGLE-2 dynamic tree (depth {s.ttt_steps}, top-{DYNAMIC_TOPK}, "
                      f"{tree.num_nodes} nodes), greedy acceptance"),
        "eagle3-typical": row("eagle3-typical", drafter, tree, "typical",
                              f"EAGLE-3 draft, {tree.num_nodes}-node tree, typical acceptance"),
    }
    out["eagle3-chain+lookup"] = with_lookup(row("eagle3-chain", chain_drafter(), chain, "greedy", chain_help),
                                             p["costs"] if p is not None else None)
    return out
