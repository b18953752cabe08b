"""`accel train learn2pd`: oracle data (generated when missing) -> filter training -> run dir.

The run dir gets, besides the trainer's checkpoints and metrics.jsonl: `filter.safetensors`
(the trained filter), `learn2pd.json` (block length, tau, EoTP, backbone, oracle provenance)
and `filter_metrics.json` (precision / recall / FPR at tau on train and held-out prompts),
which is what `accel export` reads.

Training is full batch (docs/recipes/learn2pd.md): the whole training split is one batch, fed to the
shared trainer as a one-item dataset, so resume/metrics/progress come from `fit`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from accel.core.files import save_tensors
from accel.data.tasks import generate, resolve_tasks, score
from accel.models.backbone import backbone_ref, device_of, load_backbone
from accel.models.families import detect
from accel.recipes.learn2pd import model as M, oracle
from accel.recipes.learn2pd.calibrate import TAU_GRID, calibrate_tau
from accel.recipes.learn2pd.config import Config
from accel.recipes.learn2pd.oracle import encode_prompt, load_oracle_dataset, load_prompts
from accel.recipes.learn2pd.spec import Spec
from accel.recipes.shared.run_export import write_run_spec
from accel.trainers.config import ConfigError
from accel.trainers.preempt import stop_guard
from accel.trainers.rundir import prepare_run_dir, write_atomic
from accel.trainers.runguard import write_final_metrics
from accel.trainers.trainer import fit

FILTER_FILE = "filter.safetensors"
SETTINGS_FILE = "learn2pd.json"
ORACLE_PROVENANCE = ("teacher", "gen_len", "block_len", "prompt_source", "n_prompts")
"""What the checkpoint records of the oracle run the filter learnt from."""
METRICS_FILE = "filter_metrics.json"



def _lazy_backbone(cfg: Config):
    """A loader that loads the teacher at most once per run (oracle decoding and τ calibration share it)."""
    loaded = []

    def get():
        if not loaded:
            adapter = load_backbone(cfg.backbone, trust_remote_code=cfg.trust_remote_code, device=device_of(cfg.device))
            if adapter.kind != "dllm":
                raise ConfigError(f"backbone={cfg.backbone} is an AR model; Learn2PD needs a diffusion LM "
                                  "(e.g. builtin:dllm)")
            loaded.append(adapter)
        return loaded[0]
    return get


def published(backbone: str) -> bool:
    """Whether `backbone` is a published dLLM (LLaDA, Dream: shipped code, a 126K-152K vocabulary), read from
    its config.json without loading it; False for accel's own models (and for a path that is not a model
    directory: loading it then says what is wrong)."""
    if backbone.startswith(("builtin:", "random:")):
        return False
    try:
        cfg = json.loads((Path(backbone).expanduser() / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return detect(cfg).name in ("llada", "dream")


def _cache_words(cache) -> str:
    return f"{cache} KV cache" if cache else "no KV cache"


def ensure_oracle(cfg: Config, progress: bool = True, backbone=None) -> Path:
    """Generates (or resumes) the oracle dataset unless it is already complete."""
    out = Path(cfg.resolved_oracle_dir())
    if oracle.oracle_complete(out):
        return out
    adapter = (backbone or _lazy_backbone(cfg))()
    prompts = oracle.load_prompts(cfg.prompts, cfg.tasks, cfg.n_per_task, cfg.seed)
    cache = oracle.resolve_cache(adapter, cfg.decode_cache)
    print(f"[learn2pd] oracle data: {len(prompts)} prompts x 2 decodes (the one-token-per-step reference, then the "
          f"oracle) at gen {cfg.gen_len}, block {cfg.block_len}, {_cache_words(cache)}; n_per_task shrinks it",
          flush=True)
    oracle.generate_oracle_dataset(adapter, prompts, out, gen_len=cfg.gen_len, block_len=cfg.block_len,
                                   batch_size=cfg.oracle_batch_size, source=cfg.prompts, progress=progress,
                                   cache=cache)
    return out


def _calibrate(cfg: Config, filt, val: dict, adapter):
    """τ picked on the held-out prompts (see calibrate.py); logs the table it chose from."""
    scorer = None
    if cfg.prompts == "suite":  # fresh train-split prompts the oracle never decoded, with answers to score
        names = resolve_tasks([t.strip() for t in cfg.tasks.split(",") if t.strip()])
        exs = [e for t in names for e in generate(t, "train", cfg.n_per_task + cfg.calib_per_task, cfg.seed)
               [cfg.n_per_task:]]
        texts = [e["prompt"] for e in exs]
        scorer = lambda i, text: score(exs[i], text)  # noqa: E731
    else:  # the val split's prompts (their oracle steps were held out of training)
        rows = load_prompts(cfg.prompts, cfg.tasks, cfg.n_per_task, cfg.seed)
        texts = [rows[i]["prompt"] for i in torch.unique(val["prompt_idx"]).tolist()[:cfg.calib_prompts]]
    ids = [encode_prompt(adapter.tokenizer, t) for t in texts]
    cache = oracle.resolve_cache(adapter, cfg.decode_cache)
    stop = "" if cfg.calib_full_table else (" at most: the grid stops at the first threshold as accurate as the "
                                            "reference (calib_full_table=true decodes them all)")
    print(f"[learn2pd] tau calibration: {len(ids)} held-out prompts x (the reference + {len(TAU_GRID)} thresholds) "
          f"= {len(ids) * (len(TAU_GRID) + 1)} decodes at gen {cfg.gen_len}, {_cache_words(cache)}{stop}; "
          + ("calib_per_task" if cfg.prompts == "suite" else "calib_prompts")
          + " shrinks it, calibrate_tau=false skips it (then set tau)", flush=True)
    with torch.no_grad():
        tau, table = calibrate_tau(adapter, filt.to(adapter.device), ids, cfg.gen_len, eotp=cfg.eotp,
                                   tolerance=cfg.calib_tolerance, scorer=scorer, cache=cache,
                                   batch_size=cfg.calib_batch_size,
                                   full_table=cfg.calib_full_table)
    filt.cpu()
    for r in table:
        acc = f"accuracy {r['accuracy']:.3f}  " if "accuracy" in r else ""
        print(f"[learn2pd] tau {r['tau']:<7} {acc}agreement {r['agreement']:.3f}  NFE {r['nfe']:.2f}"
              + ("   <- chosen" if r["tau"] == tau else "") + ("   (reference)" if r["tau"] == 1.0 else ""),
              flush=True)
    decoded = [r["tau"] for r in table if r["tau"] < 1.0]
    if len(decoded) < len(TAU_GRID):
        print(f"[learn2pd] tau {', '.join(str(t) for t in sorted(TAU_GRID) if t > decoded[-1])} not decoded: "
              f"tau {decoded[-1]} already matches the reference", flush=True)
    return tau, table


class _FullBatch:
    """A one-item dataset whose item is the whole training split (full-batch training through `fit`)."""

    def __init__(self, batch: dict):
        self.batch = batch

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return self.batch


def run(cfg: Config) -> Path:
    cfg.validate()
    cfg.sized(published(cfg.backbone))
    run_dir = prepare_run_dir(cfg, "learn2pd")
    backbone = _lazy_backbone(cfg)
    with stop_guard("Learn2PD oracle data", run_dir):
        ds, meta = load_oracle_dataset(ensure_oracle(cfg, backbone=backbone))
    if meta["block_len"] != cfg.block_len:
        raise ConfigError(f"oracle data in {cfg.resolved_oracle_dir()} has block_len={meta['block_len']}, "
                          f"config says {cfg.block_len}; set block_len={meta['block_len']} or use another oracle_dir")
    train, val = M.split_by_prompt(M.oracle_tensors(ds), cfg.val_fraction, cfg.seed)
    if train["conf"].shape[0] == 0:
        raise ConfigError("the oracle data has no training steps; add prompts (n_per_task) or lower val_fraction")
    train_in = {k: v for k, v in M.shifted_copies(train, cfg.shift_copies).items() if k in ("conf", "label", "masked")}
    torch.manual_seed(cfg.seed)
    filt = M.UnmaskFilter(cfg.block_len, cfg.hidden_size)

    def loss_fn(model, batch):
        return M.bce_loss(model, batch, cfg.loss_on), {}

    def eval_fn(m):
        return M.classification_metrics(m, val, cfg.tau, prefix="val_")

    fit(cfg, filt, loss_fn, _FullBatch(train_in), data_collator=lambda xs: xs[0], eval_fn=eval_fn)
    filt = filt.cpu().eval()
    calibration = []
    if cfg.calibrate_tau:
        with stop_guard("Learn2PD τ calibration", run_dir):
            cfg.tau, calibration = _calibrate(cfg, filt, val, backbone())
    metrics = {"tau": cfg.tau, "tau_calibration": calibration, **M.classification_metrics(filt, train, cfg.tau, prefix="train_"),
               **M.classification_metrics(filt, val, cfg.tau, prefix="val_"),
               **M.classification_metrics(filt, val, 0.9, prefix="val@0.9_"),
               "train_steps": int(train["conf"].shape[0]), "val_steps": int(val["conf"].shape[0])}
    save_tensors({k: v.detach().contiguous() for k, v in filt.state_dict().items()}, run_dir / FILTER_FILE)
    settings = {"block_len": cfg.block_len, "hidden_size": cfg.hidden_size, "tau": cfg.tau, "eotp": cfg.eotp,
                "backbone": backbone_ref(cfg.backbone), "gen_len": cfg.gen_len, "oracle": meta}
    write_atomic(run_dir / SETTINGS_FILE, json.dumps(settings, indent=2))
    write_run_spec(run_dir, Spec(block_len=cfg.block_len, hidden_size=cfg.hidden_size, gen_len=cfg.gen_len,
                                 tau=cfg.tau, eotp=cfg.eotp, method="learn2pd+eotp" if cfg.eotp else "learn2pd",
                                 oracle={k: meta.get(k) for k in ORACLE_PROVENANCE}))
    write_atomic(run_dir / METRICS_FILE, json.dumps(metrics, indent=2))
    write_final_metrics(run_dir, metrics)
    return run_dir
