"""`accel export` for Medusa runs: the accel checkpoint, vLLM's Medusa layout, or the reference repo's.

- ``accel`` (default): config.json with an "accel" section (recipe, backbone, decode defaults,
  the "medusa" head config, tuned tree and measured accuracies) + model.safetensors of the
  heads (keys ``blocks.{k}.{j}.linear.{weight,bias}``, ``lm_heads.{k}.weight``).
- ``vllm``: vLLM 0.32's Medusa loader (``vllm/model_executor/models/medusa.py``, the last release
  with Medusa) — config ``model_type: "medusa"``, ``num_heads``, ``num_hidden_layers`` (residual
  layers per head), ``hidden_size``, ``vocab_size``, ``truncated_vocab_size``,
  ``medusa_fc_bias: true``; weights ``blocks.{i}.layers.{j}.{weight,bias}`` and
  ``lm_heads.{i}.weight`` (no lm-head bias). What that loader reads decides the layout of a draft
  vocabulary (`vllm_draft_layout`): it builds every ``lm_heads.{i}`` over the FULL vocabulary
  (its weight loader asserts ``vocab_size`` rows, and with a token map it first cuts any wider
  projection down to the map's rows, which then fails the same assert), and only the shared
  ``original_lm_head`` is built over ``truncated_vocab_size``; the token map is read from the
  weights file (key ``token_map``), never from config.json. So heads whose projections are all
  the same tensor export as ``original_lm_head: true`` + ``truncated_vocab_size`` + ``token_map``
  in model.safetensors (vLLM keeps the draft vocabulary's saving); heads with their own
  projections export as full-vocabulary heads (``truncated_vocab_size = vocab_size``, no map):
  row ``token_map[i]`` is draft row i and every other row is the mean of the draft rows, whose
  logit (the mean of the draft logits) never exceeds the largest draft logit, so vLLM's top-1
  proposal is the draft vocabulary's top-1, the token accel's ``medusa-chain`` drafts.
- ``medusa``: the reference repo (FasterDecoding/Medusa) — config ``medusa_num_heads``,
  ``medusa_num_layers``, ``base_model_name_or_path``; ``medusa_lm_head.pt`` (what its
  ``MedusaModel.from_pretrained`` loads, with ``torch.load`` and ``strict=False``, so a wrong key
  would be silently dropped) and the same tensors as ``medusa_lm_head.safetensors``; keys
  ``{head}.{layer}.linear.{weight,bias}`` and ``{head}.{num_layers}.weight``. The reference
  builds a head as ``[ResBlock(hidden)] * num_layers``: ONE block repeated, so with
  num_layers > 1 it keeps only the last of this export's distinct blocks (a warning says so).

The base a checkpoint names must outlive the run directory. A base loaded from a model
directory or ``builtin:*`` is referenced by absolute path. A base that exists only in the run
(Medusa-2's merged LoRA, ``random:ar``) is copied INTO the export: the accel format stores it
as the checkpoint's own model (backbone ``"."``, heads in ``heads.safetensors``); the medusa
format writes the Medusa-2 release layout (one model directory: the base's config with
``medusa_num_heads``/``medusa_num_layers``, its weights plus ``medusa_head.*``), which the
reference loads by that directory alone; vLLM gets the merged base in ``base/`` beside the heads.
The reference repo has no token map, so it refuses draft vocabularies.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from accel.core.errors import UserError
from accel.decoding.checkpoint import check_options, override_spec, save_checkpoint
from accel.decoding.tree_build import build_tree, expected_accept_length
from accel.models.weights import builtin_dir
from accel.recipes.medusa.spec import Spec
from accel.recipes.shared.run_export import write_model_dir

FORMATS = ("accel", "vllm", "medusa")


def _final(run_dir: Path) -> tuple[Path, dict]:
    final = Path(run_dir) / "final"
    meta_file = final / "medusa.json"
    if not meta_file.is_file() or not (final / "heads.safetensors").is_file():
        raise UserError(f"{run_dir} has no finished Medusa heads (final/medusa.json); finish training first — "
                        "re-running `accel train medusa` with the same output_dir resumes")
    return final, json.loads(meta_file.read_text())


def _backbone(final: Path, meta: dict) -> str:
    """An absolute base reference that does not depend on the run directory (builtin:* as a path too
    for the external formats is done by the caller); "base" = a base that lives only in the run."""
    b = meta["backbone"]
    if b == "base" or b.startswith("builtin:"):
        return b
    return str(Path(b).expanduser().resolve())


def _external_base(b: str) -> str:
    """Other loaders cannot read builtin:*: the shipped directory's absolute path."""
    if b.startswith("builtin:"):
        return str(builtin_dir(b.split(":", 1)[1]).resolve())
    return b


def _base_files(final: Path) -> tuple[dict, dict, dict]:
    """(config dict, state dict, other files) of the run's own base (final/base)."""
    d = final / "base"
    if not (d / "config.json").is_file():
        raise UserError(f"{final} names its own base but {d} is missing; re-run training to rebuild final/")
    config = json.loads((d / "config.json").read_text())
    state = {}
    for f in sorted(d.glob("*.safetensors")):
        state.update(load_file(str(f)))
    files = {f.name: f.read_bytes() for f in d.iterdir()
             if f.is_file() and f.name != "config.json" and not f.name.endswith((".safetensors", ".json.index"))
             and not f.name.startswith(".")}
    return config, state, files


def _warn_shared_blocks(num_layers: int):
    if num_layers > 1:
        print(f"warning: these heads have {num_layers} residual layers each; the reference Medusa code builds a "
              f"head as [ResBlock] * {num_layers} (one block shared {num_layers} times), so it keeps only the "
              "last layer's weights and drafts differently from accel and vLLM, which load every layer",
              file=sys.stderr)


def _head_tensors(heads: dict, num_heads: int, num_layers: int, layer_key, proj_key) -> dict:
    """The heads' tensors renamed: layer_key(i, j, p) for residual layer j of head i, proj_key(i) for its projection."""
    out = {}
    for i in range(num_heads):
        for j in range(num_layers):
            for p in ("weight", "bias"):
                out[layer_key(i, j, p)] = heads[f"blocks.{i}.{j}.linear.{p}"]
        out[proj_key(i)] = heads[f"lm_heads.{i}.weight"]
    return out


def vllm_tensors(heads: dict, num_heads: int, num_layers: int) -> dict:
    """vLLM's Medusa layout: blocks.{i}.layers.{j}.{weight,bias}, lm_heads.{i}.weight."""
    return _head_tensors(heads, num_heads, num_layers, lambda i, j, p: f"blocks.{i}.layers.{j}.{p}",
                         lambda i: f"lm_heads.{i}.weight")


def vllm_draft_layout(tensors: dict, num_heads: int, vocab_size: int) -> tuple[dict, dict]:
    """(config keys, tensors) for heads over a draft vocabulary (`tensors`: vllm_tensors' output plus
    ``token_map``), laid out as vLLM 0.32's Medusa loader reads them (module docstring): one shared
    projection -> ``original_lm_head`` over the draft vocabulary with ``token_map`` in the weights;
    one projection per head -> full-vocabulary projections, off-map rows the mean of the draft rows."""
    tm = tensors.pop("token_map").long()
    Vd = len(tm)
    if Vd < 2 or len(set(tm.tolist())) != Vd or int(tm.min()) < 0 or int(tm.max()) >= vocab_size:
        raise UserError(f"the heads' token map is not {Vd} distinct ids below the vocabulary size {vocab_size} "
                        "(at least 2); vLLM cannot serve it: re-train with draft_vocab_size=0 or >= 2")
    projs = [tensors[f"lm_heads.{i}.weight"] for i in range(num_heads)]
    if all(torch.equal(projs[0], p) for p in projs[1:]):
        for i in range(1, num_heads):
            del tensors[f"lm_heads.{i}.weight"]
        return {"truncated_vocab_size": Vd, "original_lm_head": True}, {**tensors, "token_map": tm}
    for i, w in enumerate(projs):
        full = w.mean(0, keepdim=True).expand(vocab_size, -1).clone()
        full[tm] = w
        tensors[f"lm_heads.{i}.weight"] = full
    return {"truncated_vocab_size": vocab_size}, tensors


def medusa_repo_tensors(heads: dict, num_heads: int, num_layers: int) -> dict:
    """The Medusa repository's layout: {i}.{j}.linear.{weight,bias}, {i}.{L}.weight."""
    return _head_tensors(heads, num_heads, num_layers, lambda i, j, p: f"{i}.{j}.linear.{p}",
                         lambda i: f"{i}.{num_layers}.weight")


def export(run_dir, out_dir, format: str = "accel", **overrides) -> Path:
    """overrides: the spec's settable fields (accel format only). tree_nodes: a fixed tree of that many
    nodes from the measured accuracies (overrides the run's tree_nodes; 0 = chosen on the decoding
    device at load time); gen_len: the decode default."""
    if format not in FORMATS:
        raise UserError(f"--format {format}: Medusa exports as one of {', '.join(FORMATS)}")
    check_options(Spec, overrides, "medusa")
    tree_nodes = overrides.get("tree_nodes")
    final, meta = _final(Path(run_dir))
    heads = load_file(str(final / "heads.safetensors"))
    K, L = int(meta["num_heads"]), int(meta["num_layers"])
    H, V = int(meta["hidden_size"]), int(meta["vocab_size"])
    backbone = _backbone(final, meta)
    Vd = int(meta.get("draft_vocab_size") or 0)
    if format == "accel":
        spec = Spec(**{k: meta[k] for k in ("num_heads", "num_layers", "hidden_size", "vocab_size", "mode", "loss",
                                            "tree", "head_accuracy", "chain_accept_len", "tree_accept_len")},
                    draft_vocab_size=meta.get("draft_vocab_size"), draft_vocab_coverage=meta.get("draft_vocab_coverage"),
                    tree_nodes=meta.get("tree_nodes"))
        spec = override_spec(spec, overrides, "medusa")
        if spec.tree_nodes and tree_nodes is not None:  # a fixed tree of the --set size, from the accuracies
            t = build_tree(meta["head_accuracy"], spec.tree_nodes)
            spec = dataclasses.replace(spec, tree=t.to_json(),
                                       tree_accept_len=expected_accept_length(meta["head_accuracy"], t))
        if backbone != "base":
            return save_checkpoint(out_dir, {"recipe": "medusa", "backbone": backbone}, tensors=heads, spec=spec)
        # the base lives only in the run (Medusa-2 merged LoRA, random:ar): it becomes the checkpoint's model
        config, state, files = _base_files(final)
        spec = dataclasses.replace(spec, heads_file="heads.safetensors")
        return save_checkpoint(out_dir, {"recipe": "medusa", "backbone": "."}, tensors=state, backbone_config=config,
                               extra_files={"heads.safetensors": save({k: v.contiguous() for k, v in heads.items()}),
                                            **files}, spec=spec)
    if tree_nodes is not None:
        raise UserError(f"--tree-nodes applies to the accel format; --format {format} carries no tree")
    if overrides.get("gen_len") is not None:
        raise UserError(f"--set gen_len applies to the accel format; --format {format} carries no decode settings")
    external = _external_base(backbone)
    if format == "vllm":
        cfg = {"model_type": "medusa", "architectures": ["MedusaModel"], "num_heads": K, "num_hidden_layers": L,
               "hidden_size": H, "vocab_size": V, "truncated_vocab_size": V, "medusa_fc_bias": True,
               "base_model_name_or_path": external}
        tensors = vllm_tensors(heads, K, L)
        if Vd:
            keys, tensors = vllm_draft_layout({**tensors, "token_map": heads["token_map"]}, K, V)
            cfg.update(keys)
        files = {}
        if backbone == "base":  # vLLM serves the merged base itself: ship it, named relative to this directory
            config, state, other = _base_files(final)
            files = {f"base/{n}": b for n, b in other.items()}
            files["base/config.json"] = json.dumps(config, indent=2) + "\n"
            cfg["base_model_name_or_path"] = "base"
            return write_model_dir(out_dir, {"config.json": json.dumps(cfg, indent=2) + "\n", **files},
                              {"model.safetensors": tensors, "base/model.safetensors": state})
        return write_model_dir(out_dir, {"config.json": json.dumps(cfg, indent=2) + "\n"}, {"model.safetensors": tensors})
    if Vd:
        raise UserError(f"these heads predict over a {Vd}-token draft vocabulary; the reference Medusa code has no "
                        "token map. Export --format vllm or the accel format, "
                        "or train with draft_vocab_size=0")
    _warn_shared_blocks(L)
    repo = medusa_repo_tensors(heads, K, L)
    if backbone == "base":  # Medusa-2 release layout: one directory, the merged base with medusa_head.* inside
        config, state, other = _base_files(final)
        config.update(medusa_num_heads=K, medusa_num_layers=L, base_model_name_or_path=".")
        merged = {**state, **{f"medusa_head.{k}": v for k, v in repo.items()}}
        return write_model_dir(out_dir, {"config.json": json.dumps(config, indent=2) + "\n", **other},
                          {"model.safetensors": merged, "medusa_lm_head.pt": repo,
                           "medusa_lm_head.safetensors": repo})
    cfg = {"medusa_num_heads": K, "medusa_num_layers": L, "base_model_name_or_path": external,
           "hidden_size": H, "vocab_size": V}
    return write_model_dir(out_dir, {"config.json": json.dumps(cfg, indent=2) + "\n"},
                      {"medusa_lm_head.pt": repo, "medusa_lm_head.safetensors": repo})
