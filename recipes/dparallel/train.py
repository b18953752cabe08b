"""`accel distill dparallel`: certainty-forcing self-distillation of a dLLM (docs/recipes/dparallel.md).

Pipeline: teacher trajectories (`accel.recipes.shared.trajectories`; generated into RUN/trajectories
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

import dataclasses
import json
from pathlib import Path

from accel.core.errors import UserError
from accel.data.tasks import resolve_tasks, score, test_split
from accel.data.tokenizer import chat_prompt_ids
from accel.decoding.dllm import generate_threshold
from accel.recipes.dparallel.config import Config
from accel.recipes.dparallel.loss import default_entropy_weight, make_collator, make_loss
from accel.recipes.dparallel.spec import Spec
from accel.recipes.shared.lora_distill import (ensure_trajectories,  # noqa: F401 (also imported from here)
                                               run_settings, setup_distillation, trajectory_dir)
from accel.recipes.shared.models import save_final
from accel.recipes.shared.run_export import write_run_spec
from accel.trainers.lora import apply_lora
from accel.trainers.rundir import is_rank0, write_atomic
from accel.trainers.trainer import fit

SETTINGS_FILE = "dparallel.json"


def evaluate(adapter, n: int, gen_len: int, block_len: int, threshold: float, tasks=None) -> dict:
    """Accuracy and mean NFE of entropy-threshold decoding on n test prompts per task."""
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
    run_dir, adapter, ds, meta = setup_distillation(cfg, "dparallel")
    gen_len, block_len = int(meta["gen_len"]), cfg.block_len
    lam = default_entropy_weight(adapter.family) if cfg.entropy_weight is None else cfg.entropy_weight

    model = adapter.model
    model.train()
    if cfg.lora_r > 0:
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
        settings = run_settings(cfg, adapter, res, meta, gen_len, entropy_weight=lam,
                                entropy_temperature=cfg.entropy_temperature, mask_prob=cfg.mask_prob,
                                threshold=cfg.threshold, block_len=block_len, canvas_lens=canvas)
        write_atomic(run_dir / SETTINGS_FILE, json.dumps(settings, indent=1))
        write_run_spec(run_dir, Spec(teacher=settings["teacher"], seed=cfg.seed, threshold=float(cfg.threshold),
                                     block_len=block_len, gen_len=gen_len))
    return run_dir
