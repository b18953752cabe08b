"""`accel export` for Medusa runs: the accel checkpoint, vLLM's Medusa layout, or the reference repo's.

- ``accel`` (default): config.json with an "accel" section (recipe, backbone, decode defaults,
  the "medusa" head config, tuned tree and measured accuracies) + model.safetensors of the
  heads (keys ``blocks.{k}.{j}.linear.{weight,bias}``, ``lm_heads.{k}.weight``).
- ``vllm``: vLLM's MedusaModel loader — config ``model_type: "medusa"``, ``num_heads``,
  ``num_hidden_layers`` (residual layers per head), ``hidden_size``, ``vocab_size``,
  ``truncated_vocab_size`` (= vocab_size: no token map), ``medusa_fc_bias: true``; weights
  ``blocks.{i}.layers.{j}.{weight,bias}`` and ``lm_heads.{i}.weight`` (no lm-head bias).
- ``medusa``: the reference repo (FasterDecoding/Medusa) — config ``medusa_num_heads``,
  ``medusa_num_layers``, ``base_model_name_or_path``; ``medusa_lm_head.safetensors`` with keys
  ``{head}.{layer}.linear.{weight,bias}`` and ``{head}.{num_layers}.weight``.

A run whose base must ship with the heads (random:ar, Medusa-2's merged LoRA) references the
run's ``final/base`` by absolute path (the accel format) — keep the run directory, or copy it.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

FORMATS = ("accel", "vllm", "medusa")


def _final(run_dir: Path) -> tuple[Path, dict]:
    from accel.cli.common import UserError
    final = Path(run_dir) / "final"
    meta_file = final / "medusa.json"
    if not meta_file.is_file() or not (final / "heads.safetensors").is_file():
        raise UserError(f"{run_dir} has no finished Medusa heads (final/medusa.json); finish training first — "
                        "re-running `accel train medusa` with the same output_dir resumes")
    return final, json.loads(meta_file.read_text())


def _backbone(final: Path, meta: dict) -> str:
    b = meta["backbone"]
    return str((final / b).resolve()) if b == "base" else b


def vllm_tensors(heads: dict, num_heads: int, num_layers: int) -> dict:
    out = {}
    for i in range(num_heads):
        for j in range(num_layers):
            for p in ("weight", "bias"):
                out[f"blocks.{i}.layers.{j}.{p}"] = heads[f"blocks.{i}.{j}.linear.{p}"]
        out[f"lm_heads.{i}.weight"] = heads[f"lm_heads.{i}.weight"]
    return out


def medusa_repo_tensors(heads: dict, num_heads: int, num_layers: int) -> dict:
    out = {}
    for i in range(num_heads):
        for j in range(num_layers):
            for p in ("weight", "bias"):
                out[f"{i}.{j}.linear.{p}"] = heads[f"blocks.{i}.{j}.linear.{p}"]
        out[f"{i}.{num_layers}.weight"] = heads[f"lm_heads.{i}.weight"]
    return out


def _write_dir(out: Path, files: dict[str, bytes | str], tensors: dict[str, dict]) -> Path:
    """Atomic directory write (temp dir, then rename); never replaces a non-empty foreign dir."""
    from safetensors.torch import save_file

    from accel.cli.common import UserError
    out = Path(out).expanduser().absolute()
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "config.json").exists())):
        raise UserError(f"{out} exists and is not a model directory; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for name, t in tensors.items():
            save_file({k: v.contiguous() for k, v in t.items()}, str(tmp / name), metadata={"format": "pt"})
        for name, data in files.items():
            (tmp / name).write_bytes(data.encode() if isinstance(data, str) else data)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def export(run_dir, out_dir, format: str = "accel", tree_nodes: int | None = None) -> Path:
    """tree_nodes: a fixed tree of that many nodes from the measured accuracies (overrides the run's
    tree_nodes; 0 = chosen on the decoding device at load time)."""
    from safetensors.torch import load_file

    from accel.cli.common import UserError
    if format not in FORMATS:
        raise UserError(f"--format {format}: Medusa exports as one of {', '.join(FORMATS)}")
    final, meta = _final(Path(run_dir))
    heads = load_file(str(final / "heads.safetensors"))
    K, L = int(meta["num_heads"]), int(meta["num_layers"])
    H, V = int(meta["hidden_size"]), int(meta["vocab_size"])
    backbone = _backbone(final, meta)
    if format == "accel":
        from accel.decoding.checkpoint import save_checkpoint
        section = {"recipe": "medusa", "backbone": backbone,
                   "decode": {"method": "medusa", "acceptance": "greedy"},
                   "medusa": {k: meta[k] for k in ("num_heads", "num_layers", "hidden_size", "vocab_size", "mode",
                                                   "loss", "tree", "head_accuracy", "chain_accept_len",
                                                   "tree_accept_len")}}
        section["medusa"].update({k: meta[k] for k in ("draft_vocab_size", "draft_vocab_coverage") if k in meta})
        nodes = meta.get("tree_nodes") if tree_nodes is None else int(tree_nodes)
        if nodes is not None:
            if nodes < 0:
                raise UserError(f"--tree-nodes {nodes}: use >= 1 for a fixed tree or 0 to size it on the device")
            section["medusa"]["tree_nodes"] = nodes
            if nodes > 0 and tree_nodes is not None:
                from accel.recipes.medusa.tree_build import build_tree, expected_accept_length
                t = build_tree(meta["head_accuracy"], nodes)
                section["medusa"].update(tree=t.to_json(),
                                         tree_accept_len=expected_accept_length(meta["head_accuracy"], t))
        return save_checkpoint(out_dir, section, tensors=heads)
    if format == "vllm":
        cfg = {"model_type": "medusa", "architectures": ["MedusaModel"], "num_heads": K, "num_hidden_layers": L,
               "hidden_size": H, "vocab_size": V, "truncated_vocab_size": V, "medusa_fc_bias": True,
               "base_model_name_or_path": backbone}
        return _write_dir(out_dir, {"config.json": json.dumps(cfg, indent=2) + "\n"},
                          {"model.safetensors": vllm_tensors(heads, K, L)})
    cfg = {"medusa_num_heads": K, "medusa_num_layers": L, "base_model_name_or_path": backbone,
           "hidden_size": H, "vocab_size": V}
    return _write_dir(out_dir, {"config.json": json.dumps(cfg, indent=2) + "\n"},
                      {"medusa_lm_head.safetensors": medusa_repo_tensors(heads, K, L)})
