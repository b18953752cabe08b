"""`accel distill d2f`: Discrete Diffusion Forcing — asymmetric distillation of a dLLM into a
block-causal student that decodes blocks in a pipeline with an exact KV cache (docs/recipes/d2f.md).

Pipeline: teacher trajectories (shared with dParallel: `accel.recipes.dparallel.train.
ensure_trajectories`, generated into RUN/trajectories when `trajectories` is empty) → LoRA
training with the D2F loss (`loss.py`: block-causal student vs the same weights with the adapter
disabled under full attention) through `fit` (DeepSpeed via `deepspeed=zero2`; AdamW
β=(0.9, 0.95), wd 0.05, clip 1.0) → ``RUN/final/``: the merged HF model (adapters kept in
final/adapter) and ``RUN/d2f.json`` with what export needs (teacher, block size, thresholds).

Choices the paper leaves open at this scale: the training text is the teacher's own decodes
(self-distillation data; the paper used an SFT set), gen_len 64 since built-in answers are
≤ 20 tokens, LoRA also on the MLP and lr 1e-3 for a 1M-parameter model.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from accel.data.tasks import resolve_tasks, score, test_split
from accel.data.tokenizer import chat_prompt_ids
from accel.recipes.d2f.config import Config
from accel.recipes.d2f.decode import generate_d2f, require_block_causal
from accel.recipes.d2f.loss import make_loss
from accel.recipes.d2f.spec import Spec
from accel.recipes.shared.lora_distill import run_settings, setup_distillation, trajectory_collator as make_collator
from accel.recipes.shared.models import save_final
from accel.recipes.shared.run_export import write_run_spec
from accel.trainers.lora import apply_lora
from accel.trainers.rundir import is_rank0, write_atomic
from accel.trainers.trainer import fit

SETTINGS_FILE = "d2f.json"


def evaluate(adapter, n: int, gen_len: int, block_len: int, tau_add: float, tau_act: float, tau_conf: float,
             tasks=None) -> dict:
    """Accuracy and mean NFE of D2F pipelined decoding on n test prompts per task."""
    model = adapter.model
    was = model.training
    model.eval()
    correct = total = nfe = 0
    try:
        for t in resolve_tasks(tasks):
            exs = test_split(t, n)
            res = generate_d2f(adapter, [chat_prompt_ids(adapter.tokenizer, e["prompt"]) for e in exs],
                               gen_len=gen_len, block_len=block_len, tau_add=tau_add, tau_act=tau_act,
                               tau_conf=tau_conf)
            correct += sum(bool(score(e, txt)) for e, txt in zip(exs, res.texts))
            total += len(exs)
            nfe += sum(res.nfe)
    finally:
        model.train(was)
    return {"accuracy": correct / total, "nfe": nfe / total}


def run(cfg: Config) -> Path:
    run_dir, adapter, ds, meta = setup_distillation(cfg, "d2f", check_model=require_block_causal)
    gen_len, block_len = int(meta["gen_len"]), cfg.block_len
    model = adapter.model
    model.train()
    model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)

    eval_fn = None
    if cfg.eval_n > 0 and cfg.prompts == "builtin":
        def eval_fn(m):
            return evaluate(dataclasses.replace(adapter, model=m), cfg.eval_n, gen_len, block_len, cfg.tau_add,
                            cfg.tau_act, cfg.tau_conf, cfg.tasks or None)

    loss_fn = make_loss(adapter, block_len, cfg.min_ratio, cfg.max_ratio)
    res = fit(cfg, model, loss_fn, ds, data_collator=make_collator(adapter, gen_len), eval_fn=eval_fn)
    if is_rank0():
        save_final(model, adapter.tokenizer, run_dir / "final", lora=True)
        settings = run_settings(cfg, adapter, res, meta, gen_len, block_len=block_len, tau_add=cfg.tau_add,
                                tau_act=cfg.tau_act, tau_conf=cfg.tau_conf, min_ratio=cfg.min_ratio,
                                max_ratio=cfg.max_ratio)
        write_atomic(run_dir / SETTINGS_FILE, json.dumps(settings, indent=1))
        write_run_spec(run_dir, Spec(teacher=settings["teacher"], seed=cfg.seed, block_len=block_len,
                                     tau_add=float(cfg.tau_add), tau_act=float(cfg.tau_act),
                                     tau_conf=float(cfg.tau_conf), gen_len=gen_len))
    return run_dir
