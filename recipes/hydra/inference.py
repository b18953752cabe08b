"""Hydra bench / decode methods from an exported checkpoint.

``greedy`` is the base model alone (KV cache); ``hydra`` drafts the checkpoint's tree with the
Hydra heads and verifies it with greedy acceptance (output identical to ``greedy``);
``hydra-typical`` uses typical acceptance (ε 0.09, α 0.3). The Hydra rows report
``extra["accepted_per_forward"]`` through the tree decoder; the bench's tokens-per-forward
column is the same quantity counted by the harness.
"""
from __future__ import annotations

from accel.recipes.medusa.inference import DEFAULT_BATCH_SIZE  # noqa: F401  (same regime as Medusa)

DEFAULT_METHODS = ["greedy", "hydra"]


class HydraMethod:
    """A MethodFn: tree decoding of the bench's adapter with this checkpoint's heads and tree."""

    def __init__(self, drafter, tree, acceptance: str, help: str):
        self.drafter, self.tree, self.acceptance, self.help = drafter, tree, acceptance, help
        self.block_len = None

    def __call__(self, adapter, prompts, gen_len):
        from accel.decoding.tree import generate_tree
        return generate_tree(adapter, self.drafter, self.tree, prompts, max_new_tokens=gen_len,
                             acceptance=self.acceptance)


def load_heads(ckpt, adapter):
    """The checkpoint's `HydraHeads` on the adapter's device, checked against the base model."""
    from safetensors.torch import load_file

    from accel.decoding.checkpoint import CheckpointError
    from accel.recipes.hydra.heads import HydraHeads
    s = ckpt.accel.get("hydra")
    if not s:
        raise CheckpointError(f"{ckpt.path} has no \"hydra\" section; re-export it with `accel export RUN --out DIR`")
    emb = adapter.model.get_input_embeddings().weight
    if emb.shape[1] != int(s["hidden_size"]):
        raise CheckpointError(f"{ckpt.path}: heads expect hidden size {s['hidden_size']} but the base "
                              f"{ckpt.backbone_target()} has {emb.shape[1]}; export against the base they were trained on")
    state = load_file(str(ckpt.path / s.get("heads_file", "heads.safetensors")))
    heads = HydraHeads(int(s["hidden_size"]), int(s["vocab_size"]), int(s["num_heads"]), int(s["num_layers"]),
                       prefix_config=adapter.model.config if s.get("prefix_layer") else None,
                       token_map=state.get("token_map"))
    missing, unexpected = heads.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{ckpt.path}: head weights do not match the \"hydra\" section (missing "
                              f"{missing[:3]}, unexpected {unexpected[:3]}); re-export the run")
    return heads.to(device=adapter.device, dtype=emb.dtype).eval()


def bench_methods(ckpt, adapter) -> dict:
    """{name: fn(adapter, prompts, gen_len) -> DecodeResult}: greedy, hydra, hydra-typical."""
    from accel.decoding.methods import get_method
    from accel.decoding.tree import TreeSpec
    from accel.recipes.hydra.drafter import HydraDrafter
    heads = load_heads(ckpt, adapter)
    s = ckpt.accel["hydra"]
    tree = TreeSpec.from_json(s["tree"])
    if int(s.get("tree_nodes", -1)) == 0 and s.get("topk_accuracy"):  # sized for this device
        from accel.recipes.medusa.inference import auto_tree
        tree, _ = auto_tree(adapter, HydraDrafter(heads, adapter.model.get_input_embeddings()), s["topk_accuracy"])
    drafter = HydraDrafter(heads, adapter.model.get_input_embeddings())
    name = "Hydra++" if s.get("prefix_layer") else "Hydra"
    return {
        "greedy": get_method("greedy", "ar"),
        "hydra": HydraMethod(drafter, tree, "greedy", f"{name} heads, {tree.num_nodes}-node tree, greedy acceptance"),
        "hydra-typical": HydraMethod(drafter, tree, "typical",
                                     f"{name} heads, {tree.num_nodes}-node tree, typical acceptance"),
    }
