"""`accel teacher`: the built-in tiny teachers (build, inspect, evaluate)."""
from __future__ import annotations

from pathlib import Path

import typer

from accel.cli.common import PlainUsage, fail, user_errors

app = typer.Typer(help="Build and inspect the built-in tiny teachers (a masked-diffusion LM and an AR LM).",
                  no_args_is_help=True)


@app.command(cls=PlainUsage)
def build(
    kind: str = typer.Argument(..., metavar="KIND", help="Which teacher: 'dllm' (bidirectional masked diffusion) or "
                               "'ar' (causal) for the short world; 'dllm-long' or 'ar-long' for the long-answer world "
                               "(docs/long-world.md: about 90 CPU-minutes for both; build ar-long first)."),
    out: Path = typer.Option(None, "--out", help="Output directory (default: the package's built-in slot)."),
    seed: int = typer.Option(0, help="Seed; the same seed and --threads rebuild the same weights."),
    max_steps: int = typer.Option(None, help="Upper bound on optimizer steps per stage (default: 6000 ar; dllm 3000 "
                                  "per stage; ar-long 2500; dllm-long 3000 + 2000)."),
    init_from: Path = typer.Option(None, help="Teacher to start from. dllm/dllm-long: the AR teacher (default: the "
                                   "built-in AR teacher of the same world); ar-long: default the short AR teacher "
                                   "(same shape and tokenizer); ar: none (from scratch)."),
    threads: int = typer.Option(1, help="CPU threads (fixed so the build is reproducible)."),
    target: float = typer.Option(None, help="Stop once every task's held-out accuracy reaches this "
                                 "(default 0.95; long world 0.92)."),
):
    """Train a tiny teacher on the synthetic suite (CPU; resumes an interrupted build: rerun the same command).

    The AR teacher trains from scratch; the dLLM teacher starts from the AR teacher's weights with shifted logits (Dream-style AR-to-diffusion adaptation), which a tiny bidirectional model needs to learn positional copying within CPU minutes rather than hours, then runs a second, lower-LR stage weighted towards its hardest tasks. The -long kinds do the same on the long-answer suite in the same 4 x 128 shape, the AR one starting from the short AR teacher. Stage outputs and resumable state live in OUT.work/.
    """
    kinds = ("dllm", "ar", "dllm-long", "ar-long")
    if kind not in kinds:
        fail(f"unknown teacher kind {kind!r}; choose one of: {', '.join(kinds)}")
    from accel.models.weights import builtin_dir
    from accel.trainers.teachers import TeacherBuildConfig, build_teacher

    out = out or builtin_dir(kind)
    kw = dict(seed=seed, threads=threads, **({"target": target} if target is not None else {}))
    stages = TeacherBuildConfig.stages_for(kind, **kw)
    start = {"dllm": "ar", "dllm-long": "ar-long", "ar-long": "ar"}.get(kind)  # what each build starts from
    prev = str(init_from or builtin_dir(start)) if start else ""
    if prev and not (Path(prev) / "model.safetensors").exists():
        fail(f"--init-from {prev} has no model.safetensors; build that teacher first: accel teacher build {start}")
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
def info(target: str = typer.Argument("builtin:dllm", metavar="[TARGET]", help="builtin:dllm, builtin:ar, their "
                                      "-long twins or a model directory.")):
    """Print a teacher's family, size and conventions (mask id, logit alignment, end ids)."""
    with user_errors():
        from accel.models.backbone import load_backbone
        a = load_backbone(target)
    n = sum(p.numel() for p in a.model.parameters())
    typer.echo(f"{a.source}: family={a.family} kind={a.kind} params={n / 1e6:.2f}M mask_id={a.mask_id} "
               f"shift_logits={a.shift_logits} eos_ids={list(a.eos_ids)} vocab={len(a.tokenizer)}")


@app.command(cls=PlainUsage)
def evaluate(
    target: str = typer.Argument("builtin:dllm", metavar="[TARGET]", help="builtin:dllm, builtin:ar, their -long "
                                 "twins or a model directory."),
    n: int = typer.Option(200, help="Test prompts per task."),
    gen_len: int = typer.Option(None, help="Generation length (dLLM: one token per step, block 32; the long "
                                "world's block 16). Default 32; 128 for a long-world teacher."),
):
    """Exact-match accuracy per task with the slow baseline (the teacher's quality bar).

    A long-world teacher (builtin:dllm-long, builtin:ar-long) is evaluated on the long suite."""
    if gen_len is not None and gen_len < 1:
        fail(f"--gen-len must be >= 1 (got {gen_len})")
    with user_errors():
        from accel.data.long_tasks import LONG_BLOCK_LEN, LONG_GEN_LEN
        from accel.models.backbone import adapter_world, load_backbone
        from accel.trainers.teachers import evaluate as run_eval
        a = load_backbone(target)
        long = adapter_world(a) == "long"
        acc = run_eval(a, n, gen_len=gen_len or (LONG_GEN_LEN if long else 32), tasks=["long"] if long else None,
                       block_len=LONG_BLOCK_LEN if long else 32)
    for k, v in acc.items():
        typer.echo(f"{k:13s} {v:.3f}")
