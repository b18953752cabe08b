"""Hydra bench / decode methods from an exported checkpoint.

``greedy`` is the base model alone (KV cache); ``hydra`` drafts the checkpoint's tree with the
Hydra heads and verifies it with greedy acceptance (output identical to ``greedy``);
``hydra-typical`` uses typical acceptance (ε 0.09, α 0.3). The Hydra rows report
``extra["accepted_per_forward"]`` through the tree decoder; the bench's tokens-per-forward
column is the same quantity counted by the harness.
"""
from __future__ import annotations

from accel.recipes.hydra.spec import Spec

DEFAULT_BATCH_SIZE = 1
"""Single-stream decoding, the latency-bound regime draft heads are for (as Medusa)."""

DEFAULT_METHODS = ["greedy", "hydra"]


METHODS = {"hydra": "the checkpoint's tree, greedy acceptance (output identical to greedy)",
           "hydra-typical": "the checkpoint's tree, typical acceptance (eps 0.09, alpha 0.3)"}
"""The checkpoint's own methods (the baselines come from `accel.decoding.methods`)."""


def _hydra(adapter, prompts, gen_len, drafter, tree, acceptance):
    """Tree decoding of the bench's adapter with this checkpoint's heads and tree."""
    from accel.decoding.tree import generate_tree
    return generate_tree(adapter, drafter, tree, prompts, max_new_tokens=gen_len, acceptance=acceptance)


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
    heads = load_heads(ckpt, adapter)
    s = ckpt.spec(Spec)
    tree = TreeSpec.from_json(s.tree)
    if s.tree_nodes == 0 and s.topk_accuracy:  # sized for this device
        from accel.decoding.tree_size import auto_tree
        tree, _ = auto_tree(adapter, HydraDrafter(heads, adapter.model.get_input_embeddings()), s.topk_accuracy)
    drafter = HydraDrafter(heads, adapter.model.get_input_embeddings())
    name = "Hydra++" if s.prefix_layer else "Hydra"
    return {
        "greedy": get_method("greedy", "ar"),
        **{m: DecodeMethod(m, "ar", f"{name} heads, {tree.num_nodes}-node tree, {acc} acceptance", _hydra,
                           options=dict(drafter=drafter, tree=tree, acceptance=acc))
           for m, acc in (("hydra", "greedy"), ("hydra-typical", "typical"))},
    }
