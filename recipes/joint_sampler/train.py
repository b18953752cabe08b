"""`accel train joint-sampler`: trajectory data (generated when missing) -> sampler layer via `fit`.

The run dir gets, besides the trainer's checkpoints and metrics.jsonl: ``sampler.safetensors``
(the layer), ``joint_sampler.json`` (layer shape, token input mode, block/gen lengths, K
default, temperature, backbone, data provenance) and ``joint_metrics.json`` (exact TV / KL to
the true joint of the sampler and of the marginal baseline on held-out prompts of the
several-valid-answers tasks), which is what `accel export` reads.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from accel.core.files import save_tensors
from accel.data.tasks import MULTI_ANSWER_TASKS, resolve_tasks, test_split
from accel.data.tokenizer import chat_prompt_ids
from accel.models.backbone import backbone_ref, device_of, load_backbone
from accel.recipes.joint_sampler.config import Config
from accel.recipes.joint_sampler.data import generate_data, load_data
from accel.recipes.joint_sampler.evaluate import joint_metrics, summarize
from accel.recipes.joint_sampler.layer import build_sampler
from accel.recipes.joint_sampler.loss import collate, make_loss
from accel.recipes.joint_sampler.spec import Spec
from accel.recipes.joint_sampler.threads import gemm_thread_invariant, request_gemm_order
from accel.recipes.shared.run_export import write_run_spec
from accel.recipes.shared.trajectories import load_prompts
from accel.trainers.config import ConfigError
from accel.trainers.preempt import stop_guard
from accel.trainers.rundir import is_rank0, prepare_run_dir, write_atomic
from accel.trainers.runguard import write_final_metrics
from accel.trainers.trainer import fit

SAMPLER_FILE = "sampler.safetensors"
SETTINGS_FILE = "joint_sampler.json"
METRICS_FILE = "joint_metrics.json"



def load_frozen(cfg: Config):
    """The backbone adapter, frozen, in eval mode, on the configured device."""
    adapter = load_backbone(cfg.backbone, trust_remote_code=cfg.trust_remote_code, device=device_of(cfg.device))
    if adapter.kind != "dllm" or adapter.mask_id is None:
        raise ConfigError(f"backbone={cfg.backbone} is an AR model; the joint sampler needs a diffusion LM "
                          "(e.g. builtin:dllm)")
    adapter.model.eval()
    for p in adapter.model.parameters():
        p.requires_grad_(False)
    return adapter


def training_prompts(cfg: Config) -> list[dict]:
    """Prompt records: the suite's n_per_dependent_task per dependent task and n_per_task per other
    task (prompts=builtin), or the user's prompt file / dataset."""
    if cfg.prompts != "builtin":
        return load_prompts(cfg.prompts, cfg.tasks or None, cfg.n_per_task, cfg.seed)
    names, dep = resolve_tasks(cfg.tasks or None), set(resolve_tasks(cfg.dependent_tasks))
    groups = [([t for t in names if t not in dep], cfg.n_per_task),
              ([t for t in names if t in dep], cfg.n_per_dependent_task)]
    return [r for ts, n in groups if ts for r in load_prompts("builtin", ts, n, cfg.seed)]


def ensure_data(cfg: Config, adapter, progress: bool = True) -> Path:
    recs = training_prompts(cfg)
    tok = adapter.tokenizer
    ids = [list(chat_prompt_ids(tok, r["prompt"])) if getattr(tok, "chat_template", None)
           else list(tok(r["prompt"])["input_ids"]) for r in recs]
    return generate_data(adapter, ids, cfg.resolved_data_dir(), gen_len=cfg.gen_len, block_len=cfg.block_len,
                         max_k=cfg.max_k, states_per_prompt=cfg.states_per_prompt, temperature=cfg.traj_temperature,
                         topk=cfg.target_topk, batch_size=cfg.data_batch_size, shard_size=cfg.shard_size,
                         seed=cfg.seed, teacher=backbone_ref(cfg.backbone), progress=progress,
                         plain_states_per_prompt=cfg.plain_states_per_prompt,
                         dependence_threshold=cfg.dependence_threshold)


def eval_prompts(tok, n: int) -> list[list[int]]:
    """Held-out (test split) prompts of the several-valid-answers tasks."""
    return [list(chat_prompt_ids(tok, ex["prompt"])) for t in MULTI_ANSWER_TASKS for ex in test_split(t, n)]


def run(cfg: Config) -> Path:
    cfg.validate()
    request_gemm_order()  # before the process's first matmul (threads.py)
    cfg.set_threads()
    run_dir = prepare_run_dir(cfg, "joint-sampler")
    adapter = load_frozen(cfg)
    invariant = gemm_thread_invariant()  # checked once the inputs are known good: a bad backbone stays one line
    if not invariant:
        print("joint-sampler: GEMMs are not thread-count invariant here (MKL_CBWR had no effect: set it in the "
              "environment before starting); the trained sampler depends on the thread count", file=sys.stderr)
    with stop_guard("joint-sampler trajectory data", run_dir):
        states, meta = load_data(ensure_data(cfg, adapter))
    if meta["block_len"] != cfg.block_len or meta["max_k"] != cfg.max_k:
        raise ConfigError(f"data in {cfg.resolved_data_dir()} has block_len={meta['block_len']}, max_k={meta['max_k']}; "
                          "match them or use another data_dir")
    sampler = build_sampler(adapter, cfg.token_input, cfg.seed)
    sampler.train()
    pad = adapter.pad_id
    fit(cfg, sampler, make_loss(adapter, cfg.next_weight, cfg.order_weight), states, data_collator=lambda xs: collate(xs, pad))
    sampler.eval()
    if not is_rank0():
        return run_dir
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in sampler.state_dict().items()
               if not k.startswith("rotary.")}
    save_tensors(tensors, run_dir / SAMPLER_FILE)
    settings = {"backbone": backbone_ref(cfg.backbone), "layer": sampler.cfg, "token_input": cfg.token_input,
                "block_len": cfg.block_len, "gen_len": cfg.gen_len, "max_k": cfg.max_k, "k_default": cfg.k_default,
                "temperature": cfg.temperature, "top_m": cfg.top_m, "gemm_thread_invariant": invariant,
                "data": {k: meta.get(k) for k in ("teacher", "gen_len", "block_len", "max_k", "temperature",
                                                  "n_prompts", "n_states", "topk")}}
    write_atomic(run_dir / SETTINGS_FILE, json.dumps(settings, indent=2))
    write_run_spec(run_dir, Spec(layer=sampler.cfg, token_input=cfg.token_input, k=cfg.k_default,
                                 temperature=float(cfg.temperature), block_len=cfg.block_len, max_k=cfg.max_k,
                                 top_m=cfg.top_m, data=settings["data"], gen_len=cfg.gen_len))
    if cfg.eval_n > 0:
        t = cfg.temperature if cfg.temperature > 0 else 1.0
        with stop_guard("joint-sampler evaluation", run_dir):
            per = joint_metrics(adapter, sampler, eval_prompts(adapter.tokenizer, cfg.eval_n), cfg.gen_len,
                                cfg.block_len, k=cfg.k_default, top_m=cfg.top_m, temperature=t)
        metrics = {"k": cfg.k_default, "temperature": t, "top_m": cfg.top_m, "n": len(per["tv"]), **summarize(per)}
        write_atomic(run_dir / METRICS_FILE, json.dumps(metrics, indent=2))
        write_final_metrics(run_dir, metrics)
    return run_dir
