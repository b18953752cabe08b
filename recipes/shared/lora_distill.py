"""What the LoRA self-distillation recipes (dParallel, D2F) share.

Both distill a dLLM on its own decoding trajectories (`accel.recipes.shared.trajectories`),
save RUN/final like SFT, and bench the distilled model against the undistilled teacher:
training set-up (`setup_distillation`, the trajectory collator) and inference set-up
(`load_teacher`, `distilled_adapter`, `OnModel`).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

from accel.core.errors import UserError


def trajectory_dir(cfg, run_dir: Path) -> Path:
    return Path(cfg.trajectories).expanduser() if cfg.trajectories else run_dir / "trajectories"


def setup_distillation(cfg, recipe: str, check_model=None):
    """Run dir, dLLM adapter and teacher trajectories for a distillation recipe (dParallel, D2F).

    Returns (run_dir, adapter, dataset, meta); fails with a UserError on an AR backbone or
    trajectories whose length is not a multiple of cfg.block_len. `check_model(adapter)` runs
    before any trajectory is generated (D2F refuses a model that ignores its attention mask).
    """
    from accel.recipes.shared.models import load_model
    from accel.recipes.shared.trajectories import load_trajectories
    from accel.trainers.rundir import prepare_run_dir

    cfg.set_threads()
    run_dir = prepare_run_dir(cfg, recipe)
    adapter = load_model(cfg)
    if adapter.kind != "dllm" or adapter.mask_id is None:
        raise UserError(f"backbone={cfg.backbone}: {recipe} distills a diffusion LM (with a mask token); "
                        "this is an AR model — use builtin:dllm, LLaDA or Dream")
    if check_model is not None:
        check_model(adapter)
    from accel.trainers.preempt import stop_guard
    with stop_guard(f"{recipe} trajectory data", run_dir):
        ds, meta = load_trajectories(ensure_trajectories(cfg, adapter, run_dir))
    gen_len = int(meta["gen_len"])
    if gen_len % cfg.block_len:
        raise UserError(f"trajectories are {gen_len} tokens long, not a multiple of block_len={cfg.block_len}; "
                        "set block_len to a divisor or regenerate them")
    return run_dir, adapter, ds, meta


def ensure_trajectories(cfg, adapter, run_dir: Path) -> Path:
    """The trajectory dir, generated (resumably) on rank 0 when missing; other ranks wait for it."""
    from accel.recipes.shared.trajectories import TrajectoryError, generate_trajectories, is_complete, load_prompts
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


def trajectory_collator(adapter, gen_len: int):
    """Deterministic batches of trajectories: left-padded prompts + a gen_len response canvas
    (trajectories shorter than gen_len are extended with end tokens, which is where they ended)."""
    from accel.data.collate import dllm_batch

    def collate(rows):
        pairs = [(list(r["prompt_ids"]), list(r["response_ids"])) for r in rows]
        ids, valid, resp = dllm_batch(pairs, adapter.pad_id, adapter.eos_ids[0], gen_len)
        return {"ids": ids, "valid": valid, "resp": resp}

    return collate


def OnModel(fn, adapter, block_len: int, help: str = "", uses_cache: bool | None = None):
    """A DecodeMethod that decodes with a fixed adapter: the bench passes the checkpoint's model, but a
    baseline must decode with the undistilled teacher (and a method with the distilled model).

    `uses_cache`: whether `fn` needs the backbone's KV cache (default: a DecodeMethod knows; a
    partial says through its cache= keyword), so a backbone without one refuses it up front."""
    from accel.decoding.methods import DecodeMethod
    if uses_cache is None:
        uses_cache = bool(fn.uses_cache if isinstance(fn, DecodeMethod) else getattr(fn, "keywords", {}).get("cache"))
    if isinstance(fn, DecodeMethod):
        return dataclasses.replace(fn, help=help or fn.help, block=block_len, model=adapter, needs_cache=uses_cache)
    return DecodeMethod(getattr(fn, "name", ""), adapter.kind, help, fn, block=block_len, model=adapter,
                        needs_cache=uses_cache)


def load_teacher(teacher: str, seed: int, device, trust_remote_code: bool = False):
    """The undistilled backbone (random:dllm is rebuilt from its seed, as in training).

    trust_remote_code: the flag the checkpoint itself was loaded with (the teacher of a LLaDA or
    Dream checkpoint runs the same shipped code)."""
    from accel.recipes.shared.models import load_model
    adapter = load_model(SimpleNamespace(backbone=teacher, seed=seed,
                                         trust_remote_code=trust_remote_code))
    adapter.model.to(device).eval()
    return adapter


def distilled_adapter(ckpt, adapter, format: str):
    """The distilled model: the checkpoint's own model (format "merged") or the teacher + its adapters."""
    if format == "merged":
        return adapter
    from accel.trainers.lora import load_adapter, merge_lora
    base = copy.deepcopy(adapter.model)
    model = merge_lora(load_adapter(base, ckpt.path)).eval()
    return dataclasses.replace(adapter, model=model, source=str(ckpt.path))


def run_settings(cfg, adapter, res, meta, gen_len: int, **recipe_fields) -> dict:
    """What a distillation run records for its export: the teacher (an absolute path unless built-in or
    random), LoRA shape, the trajectories it learnt from, its result, and the recipe's own fields."""
    teacher = cfg.backbone
    if not teacher.startswith(("builtin:", "random:")):
        teacher = str(Path(teacher).expanduser().resolve())
    return {"teacher": teacher, "family": adapter.family, "seed": cfg.seed, "lora": cfg.lora_r > 0,
            "lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha, "lora_dropout": cfg.lora_dropout,
            "lora_target_modules": list(cfg.lora_target_modules), "train_gen_len": gen_len, **recipe_fields,
            "steps": res.global_step,
            "trajectories": {k: meta.get(k) for k in ("teacher", "gen_len", "block_len", "n_prompts", "n_kept",
                                                      "teacher_accuracy")},
            "final_metrics": res.metrics}
