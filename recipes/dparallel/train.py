"""`accel distill dparallel`: certainty-forcing self-distillation of a dLLM (ALGORITHMS.md).

Pipeline: teacher trajectories (`accel.data.trajectories`; generated into RUN/trajectories
when `trajectories` is empty and none are there yet) → LoRA (or full) fine-tuning with the
certainty-forcing loss (`loss.py`) through `fit` (DeepSpeed via `deepspeed=zero2`) →
``RUN/final/``: the merged HF model (LoRA adapters kept in final/adapter), plus
``RUN/dparallel.json`` with what export needs (teacher, decode rule, threshold, lengths).

Choices the paper leaves open at this scale (documented, measured in the recipe's report):
the built-in teacher writes ≤ 20-token answers, so trajectories default to gen_len 64 (the
paper's 256 would be 75% end-token padding); the entropy weight λ follows the paper (2 for
LLaDA-like models, 1 for Dream); LoRA rank/lr are scaled for a 1M-parameter model.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from accel.recipes.dparallel.config import Config

SETTINGS_FILE = "dparallel.json"


def trajectory_dir(cfg: Config, run_dir: Path) -> Path:
    return Path(cfg.trajectories).expanduser() if cfg.trajectories else run_dir / "trajectories"


def setup_distillation(cfg, recipe: str):
    """Run dir, dLLM adapter and teacher trajectories for a distillation recipe (dParallel, D2F).

    Returns (run_dir, adapter, dataset, meta); fails with a UserError on an AR backbone or
    trajectories whose length is not a multiple of cfg.block_len.
    """
    import torch

    from accel.cli.common import UserError
    from accel.data.trajectories import load_trajectories
    from accel.recipes.sft.train import load_model
    from accel.trainers.rundir import prepare_run_dir

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    run_dir = prepare_run_dir(cfg, recipe)
    adapter = load_model(cfg)
    if adapter.kind != "dllm" or adapter.mask_id is None:
        raise UserError(f"backbone={cfg.backbone}: {recipe} distills a diffusion LM (with a mask token); "
                        "this is an AR model — use builtin:dllm, LLaDA or Dream")
    from accel.trainers.preempt import stop_guard
    with stop_guard(f"{recipe} trajectory data", run_dir):
        ds, meta = load_trajectories(ensure_trajectories(cfg, adapter, run_dir))
    gen_len = int(meta["gen_len"])
    if gen_len % cfg.block_len:
        raise UserError(f"trajectories are {gen_len} tokens long, not a multiple of block_len={cfg.block_len}; "
                        "set block_len to a divisor or regenerate them")
    return run_dir, adapter, ds, meta


def ensure_trajectories(cfg: Config, adapter, run_dir: Path) -> Path:
    """The trajectory dir, generated (resumably) on rank 0 when missing; other ranks wait for it."""
    from accel.data.trajectories import TrajectoryError, generate_trajectories, is_complete, load_prompts
    from accel.trainers.rundir import is_rank0

    out = trajectory_dir(cfg, run_dir)
    if is_complete(out):
        return out
    if cfg.trajectories and not out.exists():
        raise TrajectoryError(f"trajectories={cfg.trajectories}: no such directory; make it with "
                              "`accel data trajectories --out DIR` or leave trajectories empty")
    if not is_rank0():
        while not is_complete(out):  # rank 0 is decoding; trajectories are small, so poll
            time.sleep(2)
        return out
    records = load_prompts(cfg.prompts, cfg.tasks or None, cfg.n_per_task, cfg.seed)
    model = adapter.model
    was = model.training
    model.eval()
    try:
        generate_trajectories(adapter, records, out, gen_len=cfg.gen_len, block_len=cfg.block_len,
                              batch_size=cfg.traj_batch_size, filter_correct=cfg.filter_correct,
                              teacher=cfg.backbone)
    finally:
        model.train(was)
    return out


def evaluate(adapter, n: int, gen_len: int, block_len: int, threshold: float, tasks=None) -> dict:
    """Accuracy and mean NFE of entropy-threshold decoding on n test prompts per task."""
    from accel.data.tasks import resolve_tasks, score, test_split
    from accel.data.tokenizer import chat_prompt_ids
    from accel.decoding.dllm import generate_threshold
    correct = total = nfe = 0
    for t in resolve_tasks(tasks):
        exs = test_split(t, n)
        res = generate_threshold(adapter, [chat_prompt_ids(adapter.tokenizer, e["prompt"]) for e in exs],
                                 gen_len=gen_len, block_len=block_len, threshold=threshold, rule="entropy")
        correct += sum(bool(score(e, txt)) for e, txt in zip(exs, res.texts))
        total += len(exs)
        nfe += sum(res.nfe)
    return {"accuracy": correct / total, "nfe": nfe / total}


def run(cfg: Config) -> Path:
    import dataclasses

    from accel.cli.common import UserError
    from accel.recipes.dparallel.loss import default_entropy_weight, make_collator, make_loss
    from accel.recipes.sft.train import save_final
    from accel.trainers.rundir import is_rank0, write_atomic
    from accel.trainers.trainer import fit

    run_dir, adapter, ds, meta = setup_distillation(cfg, "dparallel")
    gen_len, block_len = int(meta["gen_len"]), cfg.block_len
    lam = default_entropy_weight(adapter.family) if cfg.entropy_weight is None else cfg.entropy_weight

    model = adapter.model
    model.train()
    if cfg.lora_r > 0:
        from accel.trainers.lora import apply_lora
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)

    eval_fn = None
    if cfg.eval_n > 0 and cfg.prompts == "builtin":
        def eval_fn(m):
            return evaluate(dataclasses.replace(adapter, model=m), cfg.eval_n, gen_len, block_len, cfg.threshold,
                            cfg.tasks or None)

    canvas = [c for c in cfg.canvas_lens if c >= gen_len]
    if any(c % block_len for c in canvas):
        raise UserError(f"canvas_lens={cfg.canvas_lens}: each must be a multiple of block_len={block_len}")
    loss_fn = make_loss(adapter, block_len, cfg.mask_prob, lam, cfg.entropy_temperature, gen_len=gen_len,
                        canvas_lens=canvas)
    res = fit(cfg, model, loss_fn, ds, data_collator=make_collator(adapter, max(canvas + [gen_len])),
              eval_fn=eval_fn)
    if is_rank0():
        save_final(model, adapter.tokenizer, run_dir / "final", lora=cfg.lora_r > 0)
        teacher = cfg.backbone
        if not teacher.startswith(("builtin:", "random:")):
            teacher = str(Path(teacher).expanduser().resolve())
        settings = {"teacher": teacher, "family": adapter.family, "seed": cfg.seed, "lora": cfg.lora_r > 0,
                    "lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha, "entropy_weight": lam,
                    "entropy_temperature": cfg.entropy_temperature, "mask_prob": cfg.mask_prob,
                    "threshold": cfg.threshold, "block_len": block_len, "train_gen_len": gen_len,
                    "canvas_lens": canvas,
                    "steps": res.global_step,
                    "trajectories": {k: meta.get(k) for k in ("teacher", "gen_len", "block_len", "n_prompts",
                                                              "n_kept", "teacher_accuracy")},
                    "final_metrics": res.metrics}
        write_atomic(run_dir / SETTINGS_FILE, json.dumps(settings, indent=1))
    return run_dir
