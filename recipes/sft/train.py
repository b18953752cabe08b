"""`accel train sft`: supervised fine-tuning of a dLLM or an AR model through `fit`.

dLLM: LLaDA-style masked-diffusion SFT. The response is padded with end tokens to
`resp_len`; each row draws a mask ratio t ~ U(min_mask_ratio, 1) and masks response tokens
i.i.d. with probability t (at least one); loss = mean CE on masked tokens (the unweighted
variant the built-in teacher uses, which trains more stably at this size than 1/t weighting).
The prompt is never masked and attention is bidirectional. AR: causal-LM CE on the response
and its end token. The masking lives in the loss (the trainer reseeds it per step), so the
collator is deterministic and resume is exact.

The run ends with ``RUN/final/``: a full HF directory (LoRA merged, tokenizer included)
that `load_backbone` and `accel decode` read like any other model.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from accel.core.errors import UserError
from accel.data.collate import ar_batch, dllm_batch
from accel.models.masks import full_mask, position_ids
from accel.recipes.sft.config import Config
from accel.recipes.shared.models import load_model, save_final  # noqa: F401 (also imported from here)
from accel.recipes.shared.pairs import load_pairs
from accel.trainers.lora import apply_lora
from accel.trainers.rundir import is_rank0, prepare_run_dir
from accel.trainers.teachers import evaluate
from accel.trainers.trainer import fit


def make_collator(adapter, cfg: Config):
    tok = adapter.tokenizer

    def collate(pairs):
        if adapter.kind == "dllm":
            ids, valid, resp = dllm_batch(pairs, adapter.pad_id, adapter.eos_ids[0], cfg.resp_len)
            return {"ids": ids, "valid": valid, "resp": resp}
        ids, valid, labels = ar_batch(pairs, tok)
        return {"ids": ids, "valid": valid, "labels": labels}

    return collate


def make_loss(adapter, cfg: Config):
    def dllm_loss(model, batch):
        ids, valid, resp = batch["ids"], batch["valid"], batch["resp"]
        B = ids.shape[0]
        t = cfg.min_mask_ratio + (1 - cfg.min_mask_ratio) * torch.rand(B, 1, device=ids.device)
        masked = (torch.rand(ids.shape, device=ids.device) < t) & resp
        # at least one masked token per row: the first response position when none was drawn
        first = resp.float().argmax(dim=1)
        none = ~masked.any(dim=1)
        masked[none, first[none]] = True
        inp = torch.where(masked, torch.full_like(ids, adapter.mask_id), ids)
        # in the family's own interface (LLaDA: attention_bias), aligned (Dream's shift undone)
        logits, _ = adapter.forward(inp, full_mask(valid), position_ids(valid), model=model)
        sel = logits[masked].float()
        loss = F.cross_entropy(sel, ids[masked])
        acc = (sel.argmax(-1) == ids[masked]).float().mean()
        return loss, {"masked_acc": float(acc), "mask_ratio": float(masked.sum() / resp.sum())}

    def ar_loss(model, batch):
        ids, valid, labels = batch["ids"], batch["valid"], batch["labels"]
        logits = model(input_ids=ids, attention_mask=valid.long(), position_ids=position_ids(valid)).logits
        lg, lb = logits[:, :-1].float(), labels[:, 1:]
        loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=-100)
        keep = lb != -100
        acc = (lg.argmax(-1)[keep] == lb[keep]).float().mean()
        return loss, {"token_acc": float(acc)}

    return dllm_loss if adapter.kind == "dllm" else ar_loss


def run(cfg: Config) -> Path:
    cfg.set_threads()
    run_dir = prepare_run_dir(cfg, "sft")
    adapter = load_model(cfg)
    if adapter.kind == "dllm" and adapter.mask_id is None:
        raise UserError(f"backbone={cfg.backbone}: a dLLM without a mask token id")
    model = adapter.model
    model.train()
    if cfg.lora_r > 0:
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    pairs = load_pairs(cfg, adapter.tokenizer)

    eval_fn = None
    if cfg.eval_n > 0 and cfg.data == "builtin":
        def eval_fn(m):
            ev = dataclasses.replace(adapter, model=m)
            return evaluate(ev, cfg.eval_n, gen_len=cfg.resp_len, tasks=cfg.tasks or None)

    fit(cfg, model, make_loss(adapter, cfg), pairs, data_collator=make_collator(adapter, cfg), eval_fn=eval_fn)
    if is_rank0():
        save_final(model, adapter.tokenizer, run_dir / "final", lora=cfg.lora_r > 0)
    return run_dir

