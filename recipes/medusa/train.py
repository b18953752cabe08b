"""`accel train medusa`: Medusa draft heads on a causal LM, through `fit`.

Medusa-1 (mode=medusa1): the base is frozen (run under no_grad, not part of the trained module,
so checkpoints hold only the heads); loss = sum_k head_decay**k * CE_k (or KL to the base's
softmax with loss=kl: self-distillation). Medusa-2 (mode=medusa2): LoRA on the base, loss =
L_lm + lambda_t * sum_k 0.8**k * CE_k with lambda ramped linearly over lambda_warmup_steps
(counted by a buffer in the trained module, so a resumed run continues the ramp) and the heads
at head_lr_mult x the learning rate.

Data (cfg.data): ``builtin`` = the suite's train split with its reference responses. That is
the default for the built-in AR teacher, whose greedy answers match the references on >= 94%
of prompts, so the suite responses are (nearly) its own outputs; `accel data self-distill`
writes the exact self-distilled alternative as jsonl. Also a .jsonl of {prompt, response}
(``response_ids`` used when present, so ids round-trip exactly) or ShareGPT conversations
(.json list / .jsonl of {"conversations": [{"from", "value"}]} or {"messages": [{"role",
"content"}]}), with loss on assistant turns only.

Logged per step: head{k}_top1, head{k}_top{topk}, est_accept_len (top-1 chain). At every save
point and at the end, held-out rank statistics give the same numbers plus the expected accepted
length of the tree built for tree_nodes (eval_*). The run ends with ``RUN/final/``:
heads.safetensors, medusa.json (head config, the tree, measured accuracies, the backbone) and,
when the base is not reloadable by name (random:ar, or merged Medusa-2 LoRA), base/.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from accel.core.files import atomic_dir, save_tensors
from accel.decoding.tree_build import build_tree, chain_accept_length, expected_accept_length
from accel.models.masks import position_ids
from accel.recipes.medusa.cached import run_cached
from accel.recipes.medusa.config import Config
from accel.recipes.medusa.examples import _err, collate, load_examples
from accel.recipes.medusa.heads import AUTO_TREE_ESTIMATE, MedusaHeads, split_model
from accel.recipes.medusa.loss import accuracies, heads_loss, rank_counts
from accel.recipes.shared.models import load_model
from accel.trainers.lora import apply_lora, merge_lora, save_adapter
from accel.trainers.rundir import is_rank0, prepare_run_dir
from accel.trainers.trainer import fit, unwrap


# -- model --------------------------------------------------------------------------------------
def build_trainable(adapter, cfg: Config):
    """The module `fit` trains: heads (+ the LoRA-wrapped base for medusa2)."""
    base = adapter.model
    _, lm_head = split_model(base)
    hidden = base.config.get_text_config().hidden_size if hasattr(base.config, "get_text_config") \
        else base.config.hidden_size
    heads = MedusaHeads(hidden, lm_head.weight.shape[0], cfg.num_heads, cfg.num_layers, lm_head.weight)

    class MedusaTrainModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = heads
            self.register_buffer("calls", torch.zeros((), dtype=torch.long))
            if cfg.mode == "medusa2":
                base.train()
                emb = base.get_input_embeddings()
                if emb is not None and lm_head.weight is emb.weight:
                    # untie (same values, both frozen): the trainer's safetensors save rejects shared storage
                    lm_head.weight = nn.Parameter(lm_head.weight.detach().clone(), requires_grad=False)
                self.base = apply_lora(base, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
            else:
                base.requires_grad_(False)
                base.eval()
                object.__setattr__(self, "frozen_base", base)  # not a submodule: not trained, not saved

        def get_base(self):
            if cfg.mode == "medusa2":
                return self.base
            dev = self.heads.lm_heads[0].weight.device
            if next(self.frozen_base.parameters()).device != dev:
                self.frozen_base.to(dev)
            return self.frozen_base

    return MedusaTrainModel()


def make_loss(cfg: Config):
    def forward_base(base, batch, grad: bool):
        body, lm_head = split_model(base)
        with torch.set_grad_enabled(grad):
            h = body(input_ids=batch["ids"], attention_mask=batch["valid"].long(),
                     position_ids=position_ids(batch["valid"])).last_hidden_state
            need_logits = grad or cfg.loss == "kl"
            return h, (lm_head(h) if need_logits else None)

    def loss_fn(model, batch):
        m = unwrap(model)
        base = m.get_base()
        labels = batch["labels"]
        if cfg.mode == "medusa1":
            h, base_logits = forward_base(base, batch, grad=False)
            loss, metrics = heads_loss(m.heads(h.detach()), labels, cfg.head_decay, cfg.topk,
                                       base_logits.detach() if cfg.loss == "kl" else None)
        else:
            if m.training:
                m.calls += 1
            step = int(m.calls) // max(1, cfg.gradient_accumulation_steps)
            lam = cfg.lambda_heads * (min(1.0, step / cfg.lambda_warmup_steps) if cfg.lambda_warmup_steps else 1.0)
            h, logits = forward_base(base, batch, grad=True)
            teacher = None
            if cfg.loss == "kl":
                with torch.no_grad(), base.disable_adapter():
                    _, teacher = forward_base(base, batch, grad=False)
                keep = labels[:, 1:] != -100
                lm = F.kl_div(F.log_softmax(logits[:, :-1][keep].float(), -1),
                              F.log_softmax(teacher[:, :-1][keep].float(), -1), log_target=True,
                              reduction="batchmean")
            else:
                lg = logits[:, :-1].float()
                lm = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
            hl, metrics = heads_loss(m.heads(h), labels, cfg.head_decay, cfg.topk, teacher)
            loss = lm + lam * hl
            metrics.update(lm_loss=float(lm.detach()), lambda_heads=lam)
        return loss, metrics

    return loss_fn


def measure(model, examples, cfg: Config, pad_id: int, batch_size: int = 64) -> dict:
    """Held-out per-head rank statistics -> accuracies, chain estimate, tree and its expected length."""
    base = model.get_base()
    body, _ = split_model(base)
    dev = model.heads.lm_heads[0].weight.device
    counts = torch.zeros(cfg.num_heads, cfg.topk + 1, dtype=torch.long)
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            b = collate(examples[i:i + batch_size], pad_id)
            b = {k: v.to(dev) for k, v in b.items()}
            h = body(input_ids=b["ids"], attention_mask=b["valid"].long(),
                     position_ids=position_ids(b["valid"])).last_hidden_state
            counts += rank_counts(model.heads(h), b["labels"], cfg.topk)
    acc = accuracies(counts)
    tree = build_tree(acc, cfg.tree_nodes or AUTO_TREE_ESTIMATE)
    return {"accuracy": acc, "tree": tree, "chain_accept_len": chain_accept_length([a[0] for a in acc]),
            "tree_accept_len": expected_accept_length(acc, tree)}


def run(cfg: Config) -> Path:
    cfg.set_threads()
    run_dir = prepare_run_dir(cfg, "medusa")
    adapter = load_model(cfg)
    if adapter.kind != "ar":
        raise _err(f"backbone={cfg.backbone} is a diffusion LM; Medusa heads need a causal (AR) model such as builtin:ar")
    if cfg.states:
        heads, measured = run_cached(cfg, adapter, run_dir)
        if is_rank0():
            save_final(SimpleNamespace(heads=heads.eval(), get_base=lambda: adapter.model), adapter, cfg, measured,
                       run_dir / "final")
        return run_dir
    tok = adapter.tokenizer
    train, held = load_examples(cfg, tok)
    model = build_trainable(adapter, cfg)
    pad = adapter.pad_id

    def eval_fn(m):
        r = measure(m, held, cfg, pad)
        out = {f"head{k}_top1": a[0] for k, a in enumerate(r["accuracy"])}
        out.update({f"head{k}_top{cfg.topk}": sum(a) for k, a in enumerate(r["accuracy"])})
        out.update(chain_accept_len=r["chain_accept_len"], tree_accept_len=r["tree_accept_len"])
        return out

    lr_mult = [(list(model.heads.parameters()), cfg.head_lr_mult)] if cfg.mode == "medusa2" else None
    trainable = None if cfg.mode == "medusa2" else list(model.heads.parameters())
    fit(cfg, model, make_loss(cfg), train, data_collator=lambda xs: collate(xs, pad), eval_fn=eval_fn,
        trainable_parameters=trainable, lr_multipliers=lr_mult)
    if is_rank0():
        model.eval()
        save_final(model, adapter, cfg, measure(model, held, cfg, pad), run_dir / "final")
    return run_dir


def save_final(model, adapter, cfg: Config, measured: dict, out: Path) -> Path:
    """RUN/final: heads.safetensors + medusa.json (+ base/ when the base must ship with the heads)."""
    with atomic_dir(out, may_replace=lambda p: True) as tmp:
        _write_final(model, adapter, cfg, measured, tmp)
    return out


def _write_final(model, adapter, cfg: Config, measured: dict, tmp: Path) -> None:
    backbone = cfg.backbone
    if cfg.mode == "medusa2" or cfg.backbone.startswith("random:"):
        base = model.get_base()
        if cfg.mode == "medusa2":
            save_adapter(base, tmp / "adapter")
            base = merge_lora(base)
        base.save_pretrained(str(tmp / "base"))
        adapter.tokenizer.save_pretrained(str(tmp / "base"))
        backbone = "base"
    elif not cfg.backbone.startswith("builtin:"):
        backbone = str(Path(cfg.backbone).expanduser().resolve())
    save_tensors({k: v.detach().cpu().contiguous() for k, v in model.heads.state_dict().items()},
                 tmp / "heads.safetensors")
    meta = {**model.heads.config(), "backbone": backbone, "mode": cfg.mode, "loss": cfg.loss,
            "tree_nodes": cfg.tree_nodes,
            "tree": measured["tree"].to_json(), "head_accuracy": measured["accuracy"],
            "chain_accept_len": measured["chain_accept_len"], "tree_accept_len": measured["tree_accept_len"],
            **{k: measured[k] for k in ("draft_vocab_coverage", "train_positions", "held_positions") if k in measured}}
    (tmp / "medusa.json").write_text(json.dumps(meta, indent=2) + "\n")
