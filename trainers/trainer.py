"""`fit`: every recipe trains through a transformers `Trainer` subclass.

Why Trainer: it already brings accelerate (DDP on gloo/NCCL), DeepSpeed ZeRO-2/3 by JSON,
bf16, gradient accumulation, PEFT-aware saving, checkpoint/resume of optimizer, scheduler
and RNG states with mid-epoch batch skipping (accelerate's seedable sampler keeps the data
order a function of seed and epoch), and wandb. What we add on top:

- the recipe's ``loss_fn(model, batch) -> (loss, metrics)`` as ``compute_loss``; the model it
  receives is the training wrapper (DDP / DeepSpeed engine) so gradients sync; use
  `unwrap(model)` to reach attributes;
- per-micro-step reseeding of torch's RNG from (seed, step, micro-step, rank), so masking and
  dropout inside loss_fn are a pure function of the step: a resumed run draws exactly what an
  uninterrupted one would, whatever RNG state was (or was not) captured;
- atomic checkpoints (`accel.trainers.checkpoint`): Trainer writes into a staging dir that is
  renamed into place once complete; our own rotation;
- SIGTERM/SIGUSR1 → save at the next step boundary (flag agreed across ranks) → exit 75;
- NaN/inf loss → `TrainingError` before the optimizer step, checkpoints untouched;
- one JSON dict per logged step in ``metrics.jsonl`` (rank 0, unrounded loss + loss_fn's
  metrics averaged over micro-batches and ranks) and a rich progress bar on rank 0.
"""
from __future__ import annotations

import atexit
import dataclasses
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.utils import logging as hf_logging

from accel.trainers import checkpoint as ckpt_lib
from accel.trainers.config import DEEPSPEED_PRESETS, ConfigError
from accel.trainers.preempt import REQUEUE_EXIT_CODE, Preempted, StopSignals as _Signals  # noqa: F401 (re-exported)
from accel.trainers.rundir import prepare_run_dir


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, bad resume target); the message says what to do."""


@dataclass
class FitResult:
    run_dir: Path
    global_step: int
    metrics: dict
    """The last logged step's metrics (plus the final eval_fn results, if any)."""
    final_checkpoint: Path


def unwrap(model):
    """The user's module inside a DDP / DeepSpeed / accelerate wrapper."""
    while hasattr(model, "module"):
        model = model.module
    return model


def resolve_deepspeed(name: str) -> str | None:
    """A shipped preset name (zero2, zero3, zero2-offload) or a JSON path -> JSON path."""
    if not name:
        return None
    if name in DEEPSPEED_PRESETS:
        return str(Path(__file__).resolve().parent / "deepspeed" / f"{name}.json")
    p = Path(name).expanduser()
    if not p.is_file():
        raise ConfigError(f"deepspeed={name}: no such file; use zero2, zero3, zero2-offload or a DeepSpeed JSON path")
    return str(p)


def _step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """A well-mixed 63-bit seed per (seed, step, micro-step, rank) (splitmix64 finaliser)."""
    x = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + micro * 0x94D049BB133111EB + rank * 0x2545F4914F6CDD1D)
    x &= (1 << 64) - 1
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & ((1 << 64) - 1)
    x ^= x >> 31
    return x & ((1 << 63) - 1)


def _wandb_env(run_dir: Path) -> None:
    """wandb offline unless the user configured it (API key, login or WANDB_MODE)."""
    if importlib.util.find_spec("wandb") is None:
        raise TrainingError("report_to=wandb needs the wandb package: pip install 'accel[wandb]', or set report_to=none")
    netrc = Path.home() / ".netrc"
    logged_in = netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    if "WANDB_MODE" not in os.environ and not os.environ.get("WANDB_API_KEY") and not logged_in:
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_DIR", str(run_dir))
    os.environ.setdefault("WANDB_PROJECT", "accel")


def _recipe_name(cfg) -> str:
    parts = type(cfg).__module__.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["accel", "recipes"] else parts[-1]


def _make_trainer_classes():
    """The callback and Trainer subclasses `fit` uses, made when it runs."""
    class RichProgress(TrainerCallback):
        """A rich progress bar (rank 0 only) showing step, loss and learning rate."""

        def __init__(self):
            self.progress = None
            self.task = None
            self.last = {}

        def on_train_begin(self, args, state, control, **kw):
            if not state.is_world_process_zero:
                return
            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False)
            self.progress.start()
            self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.last = logs
                self.on_step_end(args, state, control)

        def on_step_end(self, args, state, control, **kw):
            if self.progress is not None:
                info = ""
                if self.last:
                    info = f"loss {self.last['loss']:.4f}"
                    if "learning_rate" in self.last:
                        info += f" lr {self.last['learning_rate']:.2e}"
                self.progress.update(self.task, completed=state.global_step, info=info)

        def on_train_end(self, args, state, control, **kw):
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    class PreemptCallback(TrainerCallback):
        """At each step end, agree across ranks whether a stop signal arrived; if so save and stop."""

        def __init__(self, signals: _Signals):
            self.signals = signals
            self.triggered = False

        def on_step_end(self, args, state, control, **kw):
            flag = 1.0 if self.signals.received is not None else 0.0
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                t = torch.tensor([flag], device=args.device)
                torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
                flag = float(t.item())
            if flag > 0:
                self.triggered = True
                control.should_save = True
                control.should_training_stop = True
            return control

    class AccelTrainer(Trainer):
        """Trainer whose loss is the recipe's loss_fn; atomic checkpoints; per-step metrics."""

        def __init__(self, *a, loss_fn, accel_cfg, eval_fn=None, lr_multipliers=None, **kw):
            super().__init__(*a, **kw)
            self.lr_multipliers = lr_multipliers or {}
            self.loss_fn = loss_fn
            self.accel_cfg = accel_cfg
            self.eval_fn = eval_fn
            # loss_fn returns a mean: let Trainer divide by the accumulation steps itself.
            self.model_accepts_loss_kwargs = False
            self._staging = False
            self._rng_step, self._micro = -1, 0
            self._acc: dict[str, float] = {}
            self._acc_n = 0
            self.last_metrics: dict = {}
            self.metrics_path = Path(self.args.output_dir) / "metrics.jsonl"

        def create_optimizer(self, model=None):
            """Trainer's optimizer, with each group split by the recipe's per-parameter LR factor."""
            opt = super().create_optimizer(model)
            if self.lr_multipliers and not getattr(opt, "_accel_lr_split", False):
                groups = []
                for g in opt.param_groups:
                    by: dict[float, list] = {}
                    for p in g["params"]:
                        by.setdefault(self.lr_multipliers.get(id(p), 1.0), []).append(p)
                    groups += [{**g, "params": ps, "lr": g["lr"] * f} for f, ps in by.items()]
                opt.param_groups = groups
                opt._accel_lr_split = True
            return opt

        # -- loss ---------------------------------------------------------------------------
        def training_step(self, model, inputs, num_items_in_batch=None):
            step = self.state.global_step
            if step != self._rng_step:
                self._rng_step, self._micro = step, 0
            torch.manual_seed(_step_seed(self.args.seed, step, self._micro, self.args.process_index))
            self._micro += 1
            return super().training_step(model, inputs, num_items_in_batch)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, metrics = self.loss_fn(model, inputs)
            if not torch.isfinite(loss.detach()).all():
                last = ckpt_lib.latest_checkpoint(self.args.output_dir)
                raise TrainingError(
                    f"loss is {loss.detach().float().item()} at step {self.state.global_step + 1} "
                    f"(metrics {metrics}); stopped before the optimizer step, last good checkpoint: "
                    f"{last or 'none'}. Lower learning_rate, keep max_grad_norm > 0, or check the data.")
            if model.training:
                self._acc["loss"] = self._acc.get("loss", 0.0) + float(loss.detach().float().item())
                for k, v in (metrics or {}).items():
                    self._acc[k] = self._acc.get(k, 0.0) + float(v)
                self._acc_n += 1
            return (loss, None) if return_outputs else loss

        # -- logging ------------------------------------------------------------------------
        def _reduced_acc(self) -> dict[str, float]:
            if not self._acc_n:
                return {}
            keys = sorted(self._acc)
            vals = torch.tensor([self._acc[k] / self._acc_n for k in keys], dtype=torch.float64)
            if self.args.world_size > 1 and torch.distributed.is_initialized():
                vals = vals.to(self.args.device)
                torch.distributed.all_reduce(vals)
                vals = vals / self.args.world_size
            self._acc, self._acc_n = {}, 0
            return dict(zip(keys, vals.cpu().tolist()))

        def log(self, logs, start_time=None):
            logs = dict(logs)
            if "loss" in logs:
                logs.update(self._reduced_acc())
            super().log(logs, start_time)
            if self.is_world_process_zero():
                rec = {"step": self.state.global_step, **{k: v for k, v in logs.items()}}
                if "loss" in logs:
                    self.last_metrics = rec
                with open(self.metrics_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")

        # -- checkpoints --------------------------------------------------------------------
        def _get_output_dir(self, trial):
            if self._staging:
                return str(ckpt_lib.staging_dir(self.args.output_dir))
            return super()._get_output_dir(trial)

        def _save_checkpoint(self, model, trial):
            run_dir = Path(self.args.output_dir)
            step = self.state.global_step
            self._staging = True
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._staging = False
            self.accelerator.wait_for_everyone()
            if self.is_world_process_zero():
                staged = ckpt_lib.staging_dir(run_dir) / f"checkpoint-{step}"
                ckpt_lib.publish(staged, run_dir, step)
                ckpt_lib.rotate(run_dir, self.accel_cfg.save_total_limit)
            self.accelerator.wait_for_everyone()
            self.run_eval()

        def run_eval(self):
            if self.eval_fn is None or not self.is_world_process_zero():
                return {}
            m = unwrap(self.model)
            was = m.training
            m.eval()
            with torch.no_grad():
                res = {f"eval_{k}": float(v) for k, v in (self.eval_fn(m) or {}).items()}
            m.train(was)
            if res:
                self.log(res)
            return res

    return AccelTrainer, RichProgress, PreemptCallback


def _training_args(cfg, run_dir: Path, use_cuda: bool):
    kw = dict(
        output_dir=str(run_dir), seed=cfg.seed, data_seed=cfg.seed, learning_rate=cfg.learning_rate,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1, num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type=cfg.lr_scheduler_type, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        bf16=cfg.bf16, logging_strategy="steps", logging_steps=cfg.logging_steps, save_strategy="steps",
        save_steps=cfg.save_steps, save_total_limit=None, deepspeed=resolve_deepspeed(cfg.deepspeed),
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        dataloader_num_workers=cfg.dataloader_num_workers, remove_unused_columns=False, disable_tqdm=True,
        # recipes that pin AdamW's betas (D2F: 0.9, 0.95) declare adam_beta1/adam_beta2 fields
        adam_beta1=getattr(cfg, "adam_beta1", 0.9), adam_beta2=getattr(cfg, "adam_beta2", 0.999),
        dataloader_pin_memory=use_cuda, use_cpu=not use_cuda,
        ddp_backend="gloo" if not use_cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,
    )
    return TrainingArguments(**kw)


def _destroy_process_group() -> None:
    """Tear the process group down before the interpreter does (registered with atexit below).

    A torchrun worker that exits with its gloo/DeepSpeed communicator alive leaves the C++
    runtime to destroy still-joinable threads, which can abort the process at teardown
    ("terminate called without an active exception") after a successful run.
    """
    dist = sys.modules.get("torch.distributed")  # never imports torch just to find nothing to do
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


atexit.register(_destroy_process_group)


def fit(cfg, model, loss_fn, train_dataset, data_collator=None, eval_fn=None, trainable_parameters=None,
        lr_multipliers=None) -> FitResult:
    """Train `model` with `loss_fn` on `train_dataset` as `cfg` says; resumable and preemptible.

    `lr_multipliers` ([(parameters, factor), ...]) trains those parameters at factor x the
    scheduled learning rate (e.g. Medusa-2's heads at 4x the LoRA rate).

    `trainable_parameters` (an iterable of parameters) freezes everything else; by default
    whatever already has ``requires_grad`` trains (e.g. after `apply_lora`). Raises
    `TrainingError` on non-finite loss, `Preempted` (exit 75) after a SIGTERM/SIGUSR1 save.
    """
    run_dir = Path(cfg.output_dir).expanduser()
    if not (run_dir / "config.yaml").exists():
        prepare_run_dir(cfg, _recipe_name(cfg), run_dir)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if cfg.report_to == "wandb":
        _wandb_env(run_dir)

    resume = None
    if cfg.resume == "auto":
        resume = ckpt_lib.latest_checkpoint(run_dir)
    elif cfg.resume != "never":
        resume = Path(cfg.resume).expanduser()
        if not ckpt_lib.is_complete(resume):
            raise TrainingError(f"resume={cfg.resume}: not a complete checkpoint directory (no {ckpt_lib.MARKER} "
                                f"marker); use resume=auto or a RUN/checkpoint-N path")
    if rank0:
        ckpt_lib.clear_staging(run_dir)
        print(f"[accel] resuming from {resume}" if resume else f"[accel] starting a new run in {run_dir}",
              file=sys.stderr, flush=True)

    if trainable_parameters is not None:
        keep = {id(p) for p in trainable_parameters}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainingError("no trainable parameters: pass trainable_parameters or leave some requires_grad=True")

    hf_logging.disable_progress_bar()  # per-save "Writing model shards" bars; ours is the rich one
    use_cuda = torch.cuda.is_available()
    args = _training_args(cfg, run_dir, use_cuda)
    AccelTrainer, RichProgress, PreemptCallback = _make_trainer_classes()
    signals = _Signals().install()
    preempt_cb = PreemptCallback(signals)
    collator = data_collator if data_collator is not None else (lambda xs: xs)
    trainer = AccelTrainer(model=model, args=args, train_dataset=train_dataset, data_collator=collator,
                           loss_fn=loss_fn, accel_cfg=cfg, eval_fn=eval_fn, callbacks=[preempt_cb, RichProgress()],
                           lr_multipliers={id(p): float(f) for ps, f in (lr_multipliers or []) for p in ps})
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        signals.restore()
    step = trainer.state.global_step
    final = run_dir / f"checkpoint-{step}"
    if not ckpt_lib.is_complete(final):  # e.g. resumed at the end, or a stop before any save point
        trainer._save_checkpoint(trainer.model_wrapped, trial=None)
    if preempt_cb.triggered:
        if rank0:
            (run_dir / "preempted.json").write_text(json.dumps({"step": step, "signal": signals.received,
                                                                "checkpoint": str(final)}))
            print(f"[accel] preempted ({signals.received}) at step {step}: saved {final}, exiting "
                  f"{REQUEUE_EXIT_CODE} so the job is requeued", file=sys.stderr, flush=True)
        raise Preempted(final)
    if rank0:
        (run_dir / "preempted.json").unlink(missing_ok=True)
    metrics = dict(trainer.last_metrics)
    if eval_fn is not None and rank0:
        history = [r for r in trainer.state.log_history if any(k.startswith("eval_") for k in r)]
        if history:
            metrics.update({k: v for k, v in history[-1].items() if k.startswith("eval_")})
    return FitResult(run_dir=run_dir, global_step=step, metrics=metrics, final_checkpoint=final)


def config_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
