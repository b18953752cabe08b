"""`accel data`: datasets the recipes train on (torch is imported only inside commands)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from accel.cli.common import fail, user_errors
from accel.cli.options import AutoDevice, Device, PromptSeed, SuiteTasks, TrustRemoteCode
from accel.cli.quiet import quiet_libraries

app = typer.Typer(help="Build training data: teacher trajectories and oracle labels.", no_args_is_help=True)


@app.command("learn2pd-oracle")
def learn2pd_oracle(
    out: Path = typer.Option(Path("runs/learn2pd/oracle"), "--out", "-o",
                             help="Dataset directory (resumes there if a previous run was interrupted)."),
    backbone: str = typer.Option("builtin:dllm", "--backbone", help="dLLM teacher: builtin:dllm or a local HF model dir."),
    prompts: str = typer.Option("suite", "--prompts",
                                help="suite, a .jsonl file with a 'prompt' field, or an HF dataset dir (save_to_disk)."),
    tasks: SuiteTasks = "all",
    n_per_task: int = typer.Option(40, "--n-per-task", help="Suite prompts per task; for jsonl/HF: max prompts (0 = all)."),
    gen_len: int = typer.Option(64, "--gen-len", help="Generation length (a multiple of --block-len)."),
    block_len: int = typer.Option(32, "--block-len", help="Block length (= the filter's width)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Prompts decoded together; also the shard size."),
    device: AutoDevice = "auto",
    seed: PromptSeed = 0,
    trust_remote_code: TrustRemoteCode = False,
):
    """Learn2PD oracle labels: per decode step, the block's confidence vector and which predictions
    already match the teacher's own one-token-per-step answer (docs/recipes/learn2pd.md)."""
    if gen_len <= 0 or block_len <= 0 or gen_len % block_len:
        fail(f"--gen-len {gen_len} must be a positive multiple of --block-len {block_len}")
    if batch_size <= 0:
        fail(f"--batch-size {batch_size} must be positive")
    with user_errors():
        quiet_libraries()
        from accel.models.backbone import load_backbone
        from accel.recipes.learn2pd import oracle
        from accel.models.backbone import device_of
        rows = oracle.load_prompts(prompts, tasks, n_per_task, seed)
        adapter = load_backbone(backbone, trust_remote_code=trust_remote_code, device=device_of(device))
        if adapter.kind != "dllm":
            fail(f"--backbone {backbone} is an AR model; Learn2PD oracle data needs a diffusion LM (e.g. builtin:dllm)")
        oracle.generate_oracle_dataset(adapter, rows, out, gen_len=gen_len, block_len=block_len,
                                       batch_size=batch_size, source=prompts)
        ds, meta = oracle.load_oracle_dataset(out)
    typer.echo(f"oracle data: {len(ds)} steps from {meta['n_prompts']} prompts in {out}")


@app.command("self-distill")
def self_distill_cmd(
    out: Path = typer.Option(Path("runs/self_distill.jsonl"), "--out", "-o",
                             help="Output .jsonl of {prompt, response, response_ids} (resumes if it exists)."),
    backbone: str = typer.Option("builtin:ar", "--backbone", help="AR base model: builtin:ar or a local HF model dir."),
    prompts: str = typer.Option("suite", "--prompts",
                                help="suite (train split), sharegpt (its train split's first human turns, seeded "
                                     "order), mtbench, a .jsonl with a 'prompt' field, or ShareGPT .json/.jsonl."),
    tasks: SuiteTasks = "all",
    n_per_task: int = typer.Option(256, "--n-per-task", help="Suite prompts per task; for other sources: max "
                                                             "prompts (0 = all)."),
    english: bool = typer.Option(False, "--english", help="Keep only prompts written mostly in ASCII letters."),
    max_prompt_tokens: int = typer.Option(0, "--max-prompt-tokens", help="Skip prompts longer than this many "
                                                                          "tokens in the chat format (0 = keep all)."),
    states: Optional[Path] = typer.Option(None, "--states", help="Also cache the base's hidden states here (for "
                                                                 "frozen-base head training: recipe key states=DIR)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Longest response generated."),
    batch_size: int = typer.Option(64, "--batch-size", help="Prompts decoded together."),
    device: AutoDevice = "auto",
    seed: PromptSeed = 0,
    trust_remote_code: TrustRemoteCode = False,
):
    """Self-distillation data for Medusa/Hydra: the base model's own greedy responses to training prompts."""
    if batch_size <= 0 or max_new_tokens <= 0:
        fail("--batch-size and --max-new-tokens must be positive")
    if out.suffix != ".jsonl":
        fail(f"--out {out}: use a path ending in .jsonl")
    with user_errors():
        quiet_libraries()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from accel.recipes.shared.self_distill import load_prompts, self_distill
        from accel.models.backbone import device_of, load_backbone
        cut_later = max_prompt_tokens > 0 and prompts != "suite"  # filter by length first, then take n
        rows = load_prompts(prompts, tasks, 0 if cut_later else n_per_task, seed, english=english)
        adapter = load_backbone(backbone, trust_remote_code=trust_remote_code, device=device_of(device))
        if max_prompt_tokens > 0:
            from accel.recipes.shared.self_distill import fit_prompts
            rows = fit_prompts(adapter.tokenizer, rows, max_prompt_tokens)
            rows = rows[:n_per_task] if n_per_task > 0 and cut_later else rows
            if not rows:
                fail(f"--max-prompt-tokens {max_prompt_tokens}: no prompt is that short")
        with Progress(TextColumn("[bold]self-distill"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn()) as bar:
            task = bar.add_task("self-distill", total=len(rows))
            n = self_distill(adapter, rows, out, batch_size=batch_size, max_new_tokens=max_new_tokens,
                             progress=lambda done, total: bar.update(task, completed=done), states_dir=states)
    typer.echo(f"self-distill: {n} new responses ({len(rows)} prompts) in {out}")


@app.command("trajectories")
def trajectories(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (resumes when it holds a partial run)."),
    teacher: str = typer.Option("builtin:dllm", "--teacher", help="The dLLM that decodes: builtin:dllm or a local "
                                                                  "HF model directory."),
    prompts: str = typer.Option("builtin", "--prompts", help="builtin (the suite's train split), a .jsonl of "
                                "{prompt, optional answer, optional task} lines, or an HF dataset dir (save_to_disk)."),
    task: list[str] = typer.Option([], "--task", "-t", help="Suite task (repeatable; --prompts builtin)."),
    n_per_task: int = typer.Option(128, "--n-per-task", help="Train prompts per suite task (--prompts builtin)."),
    limit: int = typer.Option(0, "--limit", help="Use only the first N prompts (0 = all)."),
    gen_len: int = typer.Option(64, "--gen-len", help="Tokens per trajectory (multiple of --block-len); 64 suits "
                                                      "the built-in teacher, 256 real models."),
    block_len: int = typer.Option(32, "--block-len", help="Semi-AR block length of the sampler."),
    batch_size: int = typer.Option(32, "--batch-size", help="Prompts decoded together."),
    shard_size: int = typer.Option(256, "--shard-size", help="Prompts per resumable shard."),
    keep_wrong: bool = typer.Option(False, "--keep-wrong", help="Keep responses whose answer fails the check."),
    seed: PromptSeed = 0,
    trust_remote_code: TrustRemoteCode = False,
    device: Device = None,
):
    """Decode prompts with a dLLM teacher (semi-AR, one token per step) into an arrow dataset.

    Keeps only verified-correct responses where a checker exists (built-in tasks; jsonl
    'answer'). Used by `accel distill dparallel trajectories=DIR` (and D2F).

    Example:

      accel data trajectories --out runs/traj --n-per-task 128 --gen-len 64
    """
    for flag, v in (("--n-per-task", n_per_task), ("--gen-len", gen_len), ("--block-len", block_len),
                    ("--batch-size", batch_size), ("--shard-size", shard_size)):
        if v < 1:
            fail(f"{flag} must be >= 1 (got {v})")
    if gen_len % block_len:
        fail(f"--gen-len {gen_len} is not a multiple of --block-len {block_len}")
    with user_errors():
        quiet_libraries()
        from accel.data.tasks import resolve_tasks
        from accel.recipes.shared.trajectories import generate_trajectories, load_prompts, load_trajectories
        if task:
            resolve_tasks(task)
        records = load_prompts(prompts, task or None, n_per_task, seed, limit)
        from accel.decoding.bench import default_device
        from accel.models.backbone import load_backbone
        adapter = load_backbone(teacher, trust_remote_code=trust_remote_code, device=device or default_device())
        path = generate_trajectories(adapter, records, out, gen_len=gen_len, block_len=block_len,
                                     batch_size=batch_size, shard_size=shard_size, filter_correct=not keep_wrong,
                                     teacher=teacher)
        ds, meta = load_trajectories(path)
    acc = meta.get("teacher_accuracy")
    typer.echo(f"{len(ds)} of {meta['n_prompts']} trajectories kept"
               + (f" (teacher accuracy {acc:.3f} on {meta['n_checked']} checked)" if acc is not None else "")
               + f" -> {path}")
