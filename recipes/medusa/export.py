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
from pathlib import Path

FORMATS = ("accel", "vllm", "medusa")


def _final(run_dir: Path) -> tuple[Path, dict]:
    from accel.core.errors import UserError
    final = Path(run_dir) / "final"
    meta_file = final / "medusa.json"
    if not meta_file.is_file() or not (final / "heads.safetensors").is_file():
        raise UserError(f"{run_dir} has no finished Medusa heads (final/medusa.json); finish training first — "
                        "re-running `accel train medusa` with the same output_dir resumes")
    return final, json.loads(meta_file.read_text())


def _backbone(final: Path, meta: dict) -> str:
    b = meta["backbone"]
    return str((final / b).resolve()) if b == "base" else b


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


def medusa_repo_tensors(heads: dict, num_heads: int, num_layers: int) -> dict:
    """The Medusa repository's layout: {i}.{j}.linear.{weight,bias}, {i}.{L}.weight."""
    return _head_tensors(heads, num_heads, num_layers, lambda i, j, p: f"{i}.{j}.linear.{p}",
                         lambda i: f"{i}.{num_layers}.weight")


def _write_dir(out: Path, files: dict[str, bytes | str], tensors: dict[str, dict]) -> Path:
    """Atomic directory write (temp dir, then rename); never replaces a non-empty foreign dir."""
    from accel.core.files import atomic_dir, save_tensors
    out = Path(out).expanduser().absolute()
    with atomic_dir(out, may_replace=lambda p: p.is_dir() and (not any(p.iterdir()) or (p / "config.json").exists()),
                    refuse=f"{out} exists and is not a model directory; choose another --out or remove it") as tmp:
        for name, t in tensors.items():
            save_tensors({k: v.contiguous() for k, v in t.items()}, tmp / name, metadata={"format": "pt"})
        for name, data in files.items():
            (tmp / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return out


def export(run_dir, out_dir, format: str = "accel") -> Path:
    from safetensors.torch import load_file

    from accel.core.errors import UserError
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
