"""`accel teacher`: the built-in tiny teachers (build, inspect, evaluate)."""
from __future__ import annotations

from pathlib import Path

import typer

from accel.cli.common import PlainUsage, fail, user_errors

app = typer.Typer(help="Build and inspect the built-in tiny teachers (a masked-diffusion LM and an AR LM).",
                  no_args_is_help=True)


@app.command(cls=PlainUsage)
def build(
    kind: str = typer.Argument(..., metavar="KIND", help="Which teacher: 'dllm' (bidirectional masked diffusion) or 'ar' (causal)."),
    out: Path = typer.Option(None, "--out", help="Output directory (default: the package's built-in slot)."),
    seed: int = typer.Option(0, help="Seed; the same seed and --threads rebuild the same weights."),
    max_steps: int = typer.Option(None, help="Upper bound on optimizer steps per stage (default: 6000 ar; dllm 2500 + 3000)."),
    init_from: Path = typer.Option(None, help="dllm only: AR teacher to start from (default: the built-in AR teacher)."),
    threads: int = typer.Option(1, help="CPU threads (fixed so the build is reproducible)."),
    target: float = typer.Option(0.95, help="Stop once every task's held-out accuracy reaches this."),
):
    """Train a tiny teacher on the synthetic suite (CPU; resumes an interrupted build).

    The AR teacher trains from scratch; the dLLM teacher starts from the AR teacher's weights with shifted logits (Dream-style AR-to-diffusion adaptation), which a tiny bidirectional model needs to learn positional copying within CPU minutes rather than hours, then runs a second, lower-LR stage weighted towards its hardest tasks. Stage outputs and resumable state live in OUT.work/.
    """
    if kind not in ("dllm", "ar"):
        fail(f"unknown teacher kind {kind!r}; choose 'dllm' or 'ar'")
    from accel.models.backbone import builtin_dir
    from accel.trainers.teachers import TeacherBuildConfig, build_teacher

    out = out or builtin_dir(kind)
    stages = TeacherBuildConfig.stages_for(kind, seed=seed, threads=threads, target=target)
    prev = str(init_from or builtin_dir("ar")) if kind == "dllm" else ""
    if prev and not (Path(prev) / "model.safetensors").exists():
        fail(f"--init-from {prev} has no model.safetensors; build the AR teacher first: accel teacher build ar")
    with user_errors():
        for i, cfg in enumerate(stages, 1):
            if max_steps:
                cfg.max_steps = max_steps
            cfg.init_from = prev
            stage_out = out if i == len(stages) else Path(str(out) + ".work") / f"stage{i}"
            if len(stages) > 1:
                typer.echo(f"stage {i}/{len(stages)} -> {stage_out}")
            build_teacher(cfg, stage_out, log=typer.echo)
            prev = str(stage_out)
    typer.echo(f"saved {kind} teacher to {out}")


@app.command(cls=PlainUsage)
def info(target: str = typer.Argument("builtin:dllm", metavar="[TARGET]", help="builtin:dllm, builtin:ar or a model directory.")):
    """Print a teacher's family, size and conventions (mask id, logit alignment, end ids)."""
    with user_errors():
        from accel.models.backbone import load_backbone
        a = load_backbone(target)
    n = sum(p.numel() for p in a.model.parameters())
    typer.echo(f"{a.source}: family={a.family} kind={a.kind} params={n / 1e6:.2f}M mask_id={a.mask_id} "
               f"shift_logits={a.shift_logits} eos_ids={list(a.eos_ids)} vocab={len(a.tokenizer)}")


@app.command(cls=PlainUsage)
def evaluate(
    target: str = typer.Argument("builtin:dllm", metavar="[TARGET]", help="builtin:dllm, builtin:ar or a model directory."),
    n: int = typer.Option(200, help="Test prompts per task."),
    gen_len: int = typer.Option(32, help="Generation length (dLLM: one token per step, block 32)."),
):
    """Exact-match accuracy per task with the slow baseline (the teacher's quality bar)."""
    with user_errors():
        from accel.models.backbone import load_backbone
        from accel.trainers.teachers import evaluate as run_eval
        a = load_backbone(target)
        acc = run_eval(a, n, gen_len=gen_len)
    for k, v in acc.items():
        typer.echo(f"{k:10s} {v:.3f}")
