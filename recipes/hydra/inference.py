"""Hydra bench / decode methods from an exported checkpoint.

``greedy`` is the base model alone (KV cache); ``hydra`` drafts the checkpoint's tree with the
Hydra heads and verifies it with greedy acceptance (output identical to ``greedy``);
``hydra-typical`` uses typical acceptance (ε 0.09, α 0.3); ``hydra-chain`` a top-1 chain. A chain with
greedy acceptance (``hydra-chain``, and ``hydra`` where this machine's cost curve picks a chain) is cut per
step where the heads' confidence stops paying for the verification (`accel.decoding.gate`). The Hydra rows report
``extra["accepted_per_forward"]`` through the tree decoder; the bench's tokens-per-forward
column is the same quantity counted by the harness.
"""
from __future__ import annotations

from accel.recipes.hydra.spec import Spec

DEFAULT_BATCH_SIZE = 1
"""Single-stream decoding, the latency-bound regime draft heads are for (as Medusa)."""

DEFAULT_METHODS = ["greedy", "hydra", "hydra+lookup"]


METHODS = {"hydra": "the checkpoint's tree, greedy acceptance (output identical to greedy)",
           "hydra-typical": "the checkpoint's tree, typical acceptance (eps 0.09, alpha 0.3)",
           "hydra-chain": "a top-1 chain, each step as deep as the heads' confidence pays for on this machine's cost "
                          "curve, greedy acceptance",
           "hydra+lookup": "hydra with context lookup: where the last 2+ tokens occurred before, the tokens that "
                           "followed them are the chain, longer for longer matches (accel.decoding.lookup)"}
"""The checkpoint's own methods (the baselines come from `accel.decoding.methods`)."""


def plan(adapter, heads, acc, label="hydra: "):
    """The cost-curve plan (`accel.decoding.cost_curve.plan_shapes`) for these heads on this machine: a level
    is one head (its input layer over the hidden state and the drafted tokens, its blocks, its projection);
    Hydra++'s prefix layer runs once a step over the accepted tokens."""
    from accel.decoding.cost_curve import matrix_macs, plan_shapes
    per_level = matrix_macs(heads.heads[0].parameters())
    once = matrix_macs(heads.prefix.parameters()) if heads.prefix is not None else 0
    return plan_shapes(adapter.model, acc, per_level, once=once, per="depth", label=label, max_depth=heads.num_heads)


def load_heads(ckpt, adapter):
    """The checkpoint's `HydraHeads` on the adapter's device, checked against the base model."""
    from safetensors.torch import load_file

    from accel.decoding.checkpoint import CheckpointError
    from accel.recipes.hydra.heads import HydraHeads
    s = ckpt.spec(Spec)
    emb = adapter.model.get_input_embeddings().weight
    if emb.shape[1] != s.hidden_size:
        raise CheckpointError(f"{ckpt.path}: heads expect hidden size {s.hidden_size} but the base "
                              f"{ckpt.backbone_target()} has {emb.shape[1]}; export against the base they were trained on")
    state = load_file(str(ckpt.path / s.heads_file))
    heads = HydraHeads(s.hidden_size, s.vocab_size, s.num_heads, s.num_layers,
                       prefix_config=adapter.model.config if s.prefix_layer else None,
                       token_map=state.get("token_map"))
    missing, unexpected = heads.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{ckpt.path}: head weights do not match the \"hydra\" section (missing "
                              f"{missing[:3]}, unexpected {unexpected[:3]}); re-export the run")
    return heads.to(device=adapter.device, dtype=emb.dtype).eval()


def bench_methods(ckpt, adapter) -> dict:
    """{name: DecodeMethod}: greedy, hydra, hydra-typical."""
    from accel.decoding.methods import DecodeMethod, get_method
    from accel.decoding.tree import TreeSpec
    from accel.recipes.hydra.drafter import HydraDrafter
    from accel.decoding.cost_curve import decode_tree, expected_speedup
    from accel.decoding.gate import GATED, gate_chain
    from accel.decoding.lookup import with_lookup
    heads = load_heads(ckpt, adapter)
    s = ckpt.spec(Spec)
    tree = TreeSpec.from_json(s.tree)
    acc = s.topk_accuracy
    p = plan(adapter, heads, acc) if acc else None
    if s.tree_nodes == 0 and p is not None:  # sized for this machine's cost curve
        tree = p["tree"]
    chain = TreeSpec.chain(p["chain"] if p is not None else heads.num_heads)
    emb = adapter.model.get_input_embeddings()
    drafter = HydraDrafter(heads, emb)
    name = "Hydra++" if s.prefix_layer else "Hydra"

    def method(m, tr, rule):  # a chain is cut per step where the heads' confidence stops paying (accel.decoding.gate)
        gated = gate_chain(lambda: HydraDrafter(heads, emb), tr, p, heads.num_heads) if rule == "greedy" else None
        shape = (f"a top-1 chain of up to {gated.max_depth}, {GATED}" if gated is not None else
                 f"{tr.num_nodes}-node {'chain' if tr.num_nodes == tr.max_depth else 'tree'}")
        e = expected_speedup(acc, tr, p["costs"], p["draft_cost"]) if p is not None and rule == "greedy" else None
        return DecodeMethod(m, "ar", f"{name} heads, {shape}, {rule} acceptance", decode_tree,
                            options=dict(drafter=gated or drafter, tree=tr, acceptance=rule, expected=e))
    out = {"greedy": get_method("greedy", "ar"),
           **{m: method(m, tr, rule) for m, tr, rule in (("hydra", tree, "greedy"), ("hydra-typical", tree, "typical"),
                                                         ("hydra-chain", chain, "greedy"))}}
    out["hydra+lookup"] = with_lookup(method("hydra", tree, "greedy"), p["costs"] if p is not None else None)
    return out
