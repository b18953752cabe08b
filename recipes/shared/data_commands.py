"""`accel data self-distill` and `accel data trajectories`: training data several recipes share (the draft
heads' self-distilled responses; the LoRA distillations' teacher trajectories). Each recipe that reads
one lists it in its `data_commands`; `accel.cli.data` registers each command once."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from accel.core.errors import UserError
from accel.recipes.data_commands import REQUIRED, DataCommand, Option


def self_distill_data(out: Path, backbone: str, prompts: str, tasks: str, n_per_task: int, english: bool,
                      max_prompt_tokens: int, states: Optional[Path], feature_layers: str, max_new_tokens: int,
                      batch_size: int, device: str, seed: int, trust_remote_code: bool, progress=None) -> str:
    if batch_size <= 0 or max_new_tokens <= 0:
        raise UserError("--batch-size and --max-new-tokens must be positive")
    layers = parse_layers(feature_layers)
    if layers and states is None:
        raise UserError(f"--feature-layers {feature_layers}: the feature states go in a states directory; "
                        "add --states DIR")
    if out.suffix != ".jsonl":
        raise UserError(f"--out {out}: use a path ending in .jsonl")
    from accel.models.backbone import device_of, load_backbone
    from accel.recipes.shared.self_distill import fit_prompts, load_prompts, self_distill
    cut_later = max_prompt_tokens > 0 and prompts != "suite"  # filter by length first, then take n
    rows = load_prompts(prompts, tasks, 0 if cut_later else n_per_task, seed, english=english)
    adapter = load_backbone(backbone, trust_remote_code=trust_remote_code, device=device_of(device))
    if max_prompt_tokens > 0:
        rows = fit_prompts(adapter.tokenizer, rows, max_prompt_tokens)
        rows = rows[:n_per_task] if n_per_task > 0 and cut_later else rows
        if not rows:
            raise UserError(f"--max-prompt-tokens {max_prompt_tokens}: no prompt is that short")
    n = self_distill(adapter, rows, out, batch_size=batch_size, max_new_tokens=max_new_tokens,
                     progress=progress, states_dir=states, feature_layers=layers)
    return f"self-distill: {n} new responses ({len(rows)} prompts) in {out}"


def parse_layers(text: str) -> list[int]:
    """"2,15,27" -> [2, 15, 27] ("" -> []); UserError naming the flag otherwise."""
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise UserError(f"--feature-layers {text!r}: give comma-separated layer indices, e.g. 2,15,27") from None


SELF_DISTILL = DataCommand(
    name="self-distill", run=self_distill_data,
    help="Self-distillation data for Medusa, Hydra and EAGLE-3: the base model's own greedy responses to training "
         "prompts.",
    options={
        "out": Option(Path("runs/self_distill.jsonl"), "Output .jsonl of {prompt, response, response_ids} (resumes "
                      "if it exists).", flags=("--out", "-o")),
        "backbone": Option("builtin:ar", "AR base model: builtin:ar or a local HF model dir."),
        "prompts": Option("suite", "suite (train split), sharegpt (its train split's first human turns, seeded "
                          "order), mtbench, a .jsonl with a 'prompt' field, or ShareGPT .json/.jsonl."),
        "tasks": Option("all", common="tasks"),
        "n_per_task": Option(256, "Suite prompts per task; for other sources: max prompts (0 = all)."),
        "english": Option(False, "Keep only prompts written mostly in ASCII letters."),
        "max_prompt_tokens": Option(0, "Skip prompts longer than this many tokens in the chat format (0 = keep all)."),
        "states": Option(None, "Also cache the base's hidden states here (for frozen-base head training: recipe "
                         "key states=DIR).", type=Optional[Path]),
        "feature_layers": Option("", "With --states: also cache these hidden states (comma-separated indices into "
                                 "the model's hidden_states, e.g. 2,15,27: the layers an EAGLE-3 draft reads, so "
                                 "`accel train eagle3` with states=DIR runs no target forward)."),
        "max_new_tokens": Option(64, "Longest response generated."),
        "batch_size": Option(64, "Prompts decoded together."),
        "device": Option("auto", common="auto_device"),
        "seed": Option(0, common="seed"),
        "trust_remote_code": Option(False, common="trust_remote_code"),
    })


def trajectories_data(out: Path, teacher: str, prompts: str, task: list[str], n_per_task: int, limit: int,
                      gen_len: int, block_len: int, batch_size: int, shard_size: int, keep_wrong: bool, seed: int,
                      trust_remote_code: bool, device: Optional[str], progress=None) -> str:
    for flag, v in (("--n-per-task", n_per_task), ("--gen-len", gen_len), ("--block-len", block_len),
                    ("--batch-size", batch_size), ("--shard-size", shard_size)):
        if v < 1:
            raise UserError(f"{flag} must be >= 1 (got {v})")
    if gen_len % block_len:
        raise UserError(f"--gen-len {gen_len} is not a multiple of --block-len {block_len}")
    from accel.data.tasks import resolve_tasks
    from accel.recipes.shared.trajectories import generate_trajectories, load_prompts, load_trajectories
    if task:
        resolve_tasks(task)
    records = load_prompts(prompts, task or None, n_per_task, seed, limit)
    from accel.decoding.target import default_device
    from accel.models.backbone import load_backbone
    adapter = load_backbone(teacher, trust_remote_code=trust_remote_code, device=device or default_device())
    path = generate_trajectories(adapter, records, out, gen_len=gen_len, block_len=block_len,
                                 batch_size=batch_size, shard_size=shard_size, filter_correct=not keep_wrong,
                                 teacher=teacher)
    ds, meta = load_trajectories(path)
    acc = meta.get("teacher_accuracy")
    return (f"{len(ds)} of {meta['n_prompts']} trajectories kept"
            + (f" (teacher accuracy {acc:.3f} on {meta['n_checked']} checked)" if acc is not None else "")
            + f" -> {path}")


TRAJECTORIES = DataCommand(
    name="trajectories", run=trajectories_data,
    help="""Decode prompts with a dLLM teacher (semi-AR, one token per step) into an arrow dataset.

Keeps only verified-correct responses where a checker exists (built-in tasks; jsonl
'answer'). Used by `accel distill dparallel trajectories=DIR` (and D2F).

Example:

  accel data trajectories --out runs/traj --n-per-task 128 --gen-len 64
""",
    options={
        "out": Option(REQUIRED, "Output directory (resumes when it holds a partial run).", flags=("--out", "-o"),
                      type=Path),
        "teacher": Option("builtin:dllm", "The dLLM that decodes: builtin:dllm or a local HF model directory."),
        "prompts": Option("builtin", "builtin (the suite's train split), a .jsonl of {prompt, optional answer, "
                          "optional task} lines, or an HF dataset dir (save_to_disk)."),
        "task": Option([], "Suite task (repeatable; --prompts builtin).", flags=("--task", "-t"), type=list[str]),
        "n_per_task": Option(128, "Train prompts per suite task (--prompts builtin)."),
        "limit": Option(0, "Use only the first N prompts (0 = all)."),
        "gen_len": Option(64, "Tokens per trajectory (multiple of --block-len); 64 suits the built-in teacher, "
                          "256 real models."),
        "block_len": Option(32, "Semi-AR block length of the sampler."),
        "batch_size": Option(32, "Prompts decoded together."),
        "shard_size": Option(256, "Prompts per resumable shard."),
        "keep_wrong": Option(False, "Keep responses whose answer fails the check."),
        "seed": Option(0, common="seed"),
        "trust_remote_code": Option(False, common="trust_remote_code"),
        "device": Option(None, common="device"),
    })
