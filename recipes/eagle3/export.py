"""`accel export RUN --out DIR [--format accel|speculators]` for EAGLE-3.

``accel`` (default): an accel checkpoint — ``draft.safetensors`` and a config.json whose
``"accel"`` section names the target (``builtin:ar`` or an absolute model directory) and holds an
``"eagle3"`` section: shapes, feature layers, the unroll depth, the static candidate tree (built
from the run's held-out per-step top-k accuracy for a node budget) and its estimated accepted
length. A run on a random-init target (``random:ar``) stores the target in the checkpoint too.

``speculators``: the format the `speculators` package reads and ``vllm serve`` / SGLang serve
(speculators 0.9.0's ``Eagle3SpeculatorConfig``): config.json with
``speculators_model_type: eagle3``, the draft layer's ``transformer_layer_config`` (Llama),
``draft_vocab_size``, ``eagle_aux_hidden_state_layer_ids`` and a ``speculators_config`` whose
verifier is the target directory; model.safetensors with speculators' names (``fc``,
``layers.0.*``, ``norm``, ``lm_head``, ``embed_tokens``, ``d2t``, ``t2d``). The target must be a
model directory (``builtin:ar`` resolves to its directory) so the verifier can be loaded.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors.torch import load_file

from accel.decoding.checkpoint import CheckpointError, check_options, override_spec
from accel.models.weights import builtin_dir
from accel.recipes.eagle3.model import layer_config
from accel.recipes.eagle3.spec import Spec
from accel.recipes.eagle3.train import DRAFT_FILE, META_FILE
from accel.recipes.shared.draft_export import choose_tree, read_final, save_draft_checkpoint
from accel.recipes.shared.run_export import write_model_dir

FORMATS = ("accel", "speculators")
SPECULATORS_VERSION = "0.9.0"


def export(run_dir, out_dir, format: str = "accel", **overrides) -> Path:
    """Writes the checkpoint; tree_nodes / gen_len (the spec's settable fields) override the run's
    defaults (accel format)."""
    check_options(Spec, overrides, "eagle3")
    if format not in FORMATS:
        raise CheckpointError(f"--format {format}: EAGLE-3 exports accel (accel decode/bench) or speculators "
                              "(vLLM, SGLang, the speculators package)")
    tree_nodes = overrides.get("tree_nodes")
    if tree_nodes is not None and int(tree_nodes) < 1:
        raise CheckpointError(f"tree_nodes={tree_nodes}: must be >= 1")
    meta, tensors = read_final(run_dir, DRAFT_FILE, META_FILE, "eagle3", "draft")
    if format == "speculators":
        return export_speculators(meta, tensors, out_dir)
    spec = Spec(**{k: meta[k] for k in ("hidden_size", "vocab_size", "draft_vocab_size", "feature_layers",
                                        "ttt_steps", "step_decay", "seed")},
                tree=[], draft_file=DRAFT_FILE, topk_accuracy=(meta.get("stats") or {}).get("topk_accuracy"))
    spec = override_spec(spec, overrides, "eagle3")
    tree, est = choose_tree(meta, spec.tree_nodes, int(meta["ttt_steps"]))
    return save_draft_checkpoint(out_dir, "eagle3", meta, tensors, DRAFT_FILE,
                                 dataclasses.replace(spec, tree=tree, est_accept_tree=est))


def target_dir(backbone: str) -> Path:
    """The target as a model directory (what a speculators verifier entry must name)."""
    if backbone.startswith("random:"):
        raise CheckpointError(f"--format speculators: the run's target {backbone} is a random-init test model with "
                              "no directory a server could load; train on builtin:ar or a model directory")
    if backbone.startswith("builtin:"):
        return builtin_dir(backbone.split(":", 1)[1]).resolve()
    return Path(backbone).expanduser().resolve()


def speculators_config(meta: dict, target_config: dict, verifier: Path) -> dict:
    """config.json of speculators 0.9.0's Eagle3SpeculatorConfig for this draft."""
    layer = layer_config(target_config).to_dict()
    keep = ("model_type", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
            "head_dim", "rms_norm_eps", "hidden_act", "max_position_embeddings", "rope_parameters", "vocab_size",
            "num_hidden_layers", "attention_bias", "attention_dropout", "mlp_bias", "tie_word_embeddings",
            "pad_token_id", "bos_token_id", "eos_token_id", "initializer_range", "pretraining_tp", "use_cache")
    layer = {k: layer[k] for k in keep if k in layer}
    for k in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if target_config.get(k) is not None:
            layer[k] = target_config[k]
    Vd = int(meta["draft_vocab_size"])
    return {
        "architectures": ["Eagle3Speculator"],
        "speculators_model_type": "eagle3",
        "speculators_version": SPECULATORS_VERSION,
        "transformer_layer_config": layer,
        "draft_vocab_size": Vd,
        "norm_before_residual": False,
        "target_hidden_size": None,
        "eagle_aux_hidden_state_layer_ids": list(meta["feature_layers"]),
        "norm_before_fc": False,
        "fc_norm": False,
        "norm_output": False,
        "embed_requires_grad": False,
        "dtype": "float32",
        "speculators_config": {
            "algorithm": "eagle3",
            "proposal_methods": [{"proposal_type": "greedy", "speculative_tokens": int(meta["ttt_steps"]),
                                  "verifier_accept_k": 1, "accept_tolerance": 0.0}],
            "default_proposal_method": "greedy",
            "verifier": {"name_or_path": str(verifier),
                         "architectures": list(target_config.get("architectures") or [])},
        },
    }


def speculators_tensors(tensors: dict, embed: "torch.Tensor") -> dict:  # noqa: F821
    """Our state dict under speculators' names (identical except the rotary cache, which it rebuilds)."""
    out = {k: v for k, v in tensors.items() if not k.startswith("rotary.")}
    out["embed_tokens.weight"] = embed
    if int(out["t2d"].sum()) == len(out["t2d"]):  # full vocabulary: speculators keeps no mapping
        out.pop("t2d")
        out.pop("d2t")
    return out


def export_speculators(meta: dict, tensors: dict, out_dir) -> Path:
    """Writes the speculators-format directory (atomically: temp dir, then rename)."""
    verifier = target_dir(str(meta["backbone"]))
    cfg_file = verifier / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"--format speculators: the target {verifier} has no config.json")
    target_config = json.loads(cfg_file.read_text())
    if len(set(meta["feature_layers"])) != len(meta["feature_layers"]):
        raise CheckpointError(f"--format speculators: feature layers {meta['feature_layers']} repeat a layer, which "
                              "speculators rejects; train with three distinct feature_layers")
    embed = None
    for f in sorted(verifier.glob("*.safetensors")):
        st = load_file(str(f))
        for k in ("model.embed_tokens.weight", "embed_tokens.weight"):
            if k in st:
                embed = st[k]
        if embed is not None:
            break
    if embed is None:
        raise CheckpointError(f"--format speculators: no embed_tokens weight in {verifier}/*.safetensors")
    return write_model_dir(out_dir, {"config.json": json.dumps(speculators_config(meta, target_config, verifier),
                                                             indent=2) + "\n"},
                           {"model.safetensors": speculators_tensors(tensors, embed)})
