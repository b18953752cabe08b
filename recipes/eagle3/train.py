"""`accel train eagle3`: an EAGLE-3 draft on a frozen AR target, through `fit`.

Data: prompts of the task suite (or a jsonl); with ``self_distill`` (default) the responses are
the target's own greedy outputs (`accel.recipes.shared.self_distill`, cached in ``RUN/self_distill.jsonl``
and resumed from it) — EAGLE-3's finding is that regenerated responses beat the dataset's, and
they are exactly what greedy verification accepts. The draft vocabulary is counted from them.

Every step captures the target's hidden states online (one frozen forward with
``output_hidden_states``) or, with ``states``, reads them from a states directory
(`accel.recipes.eagle3.cached`: no target forward at all), unrolls the draft ``ttt_steps`` times
(the training-time test, `Eagle3Draft.unroll`) and sums per-step CE against the target's distribution over the draft
vocabulary, weighted ``step_decay**k``. Logged per step: ``step{k}_acc`` (top-1 agreement with
the target's greedy token), ``step{k}_loss``, and ``est_accept_chain`` — the simulated acceptance
length of a top-1 chain (1 + the leading run of correct steps per position), which is what
SpecForge picks checkpoints by. Save points add held-out ``eval_*`` statistics (per-step top-k
accuracy, the static tree built from it and its estimated accepted length).

The run ends with ``RUN/final/``: ``draft.safetensors`` and ``eagle3.json`` (shapes, feature
layers, unroll, held-out statistics) — what `accel export` turns into a checkpoint.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from rich.progress import Progress

from accel.core.errors import UserError
from accel.data.collate import tokenize_examples
from accel.data.tokenizer import chat_prompt_ids
from accel.decoding.tree_build import rank_metrics
from accel.models.masks import position_ids
from accel.recipes.eagle3 import cached
from accel.recipes.eagle3.config import Config
from accel.recipes.eagle3.model import Eagle3Draft, build_draft_vocab, default_feature_layers
from accel.recipes.shared.draft_training import fit_draft, held_out_statistics, write_final
from accel.recipes.shared.models import frozen_ar_target
from accel.recipes.shared.pairs import load_examples
from accel.recipes.shared.self_distill import self_distill
from accel.trainers.rundir import is_rank0
from accel.trainers.trainer import unwrap

DRAFT_FILE = "draft.safetensors"
META_FILE = "eagle3.json"
SELF_DISTILL_FILE = "self_distill.jsonl"
HELD_OUT_FILE = "self_distill_eval.jsonl"


def _examples(cfg: Config, n_per_task: int, seed: int) -> list[dict]:
    """{prompt, response} dicts from the suite's train split or the jsonl (responses optional: regenerated)."""
    return load_examples(cfg.data, n_per_task, cfg.tasks, seed, need_response=False)


def _pairs(adapter, cfg: Config, exs: list[dict], cache: Path, label: str) -> list[tuple[list[int], list[int]]]:
    """(prompt ids in chat format, response ids): the target's greedy responses when self-distilling."""
    tok = adapter.tokenizer
    if not cfg.self_distill:
        if any(not isinstance(e.get("response"), str) for e in exs):
            raise UserError(f"data={cfg.data}: self_distill=false needs a string response on every line")
        return tokenize_examples(tok, exs)

    prompts = [e["prompt"] for e in exs]
    if is_rank0():  # rank 0 writes the cache; the others wait at fit's first barrier-free read below
        with Progress(transient=True) as bar:
            task = bar.add_task(label, total=len(prompts))
            self_distill(adapter, prompts, cache, batch_size=cfg.gen_batch_size, max_new_tokens=cfg.gen_len,
                         progress=lambda done, total: bar.update(task, completed=done))
    _wait_for(cache, len(prompts))
    recs = [json.loads(x) for x in cache.read_text().splitlines() if x.strip()][:len(prompts)]
    return [(list(chat_prompt_ids(tok, r["prompt"])), list(r["response_ids"])) for r in recs]


def _wait_for(path: Path, n: int):
    """Other ranks wait until rank 0's cache holds n lines (it is written in order and fsynced)."""
    while not path.exists() or sum(1 for x in path.read_text().splitlines() if x.strip()) < n:
        time.sleep(1.0)


def feature_layers(cfg: Config, adapter) -> list[int]:
    """The target hidden states the draft fuses: cfg.feature_layers, or EAGLE-3's default for its depth."""
    L = int(adapter.model.config.num_hidden_layers)
    layers = list(cfg.feature_layers) or default_feature_layers(L)
    if max(layers) > L - 1:
        raise UserError(f"feature_layers={layers}: the target has {L} layers; use indices 0..{L - 1}")
    return layers


def build_draft(cfg: Config, adapter, pairs):
    """A fresh draft sized from the target config, draft vocab counted from `pairs`."""
    mc = adapter.model.config
    layers = feature_layers(cfg, adapter)
    V = adapter.model.get_output_embeddings().weight.shape[0]
    ids = build_draft_vocab(pairs, V, cfg.draft_vocab_size, adapter.eos_ids)
    draft = Eagle3Draft(mc, layers, ids)
    draft.init_from_target(adapter.model.get_output_embeddings())
    return draft.to(adapter.device)


def target_forward(base, layers, ids, valid, pos, draft_ids):
    """(features [B,T,3H], target logits over the draft vocabulary [B,T,Vd], greedy next token [B,T],
    E(x_{t+1}) [B,T,H]) of the frozen target, run online."""
    with torch.no_grad():
        o = base.base_model(input_ids=ids, attention_mask=valid.long(), position_ids=pos, output_hidden_states=True)
        feats = torch.cat([o.hidden_states[i] for i in layers], -1)
        logits = base.get_output_embeddings()(o.last_hidden_state)
        emb = base.get_input_embeddings()(ids)
        emb_next = torch.cat([emb[:, 1:], emb[:, -1:]], 1)
    return feats, logits[..., draft_ids], logits.argmax(-1), emb_next


def forward_draft(draft, base, batch, steps: int):
    """(per-step draft logits, target logits over the draft vocabulary, target greedy tokens) for one
    collated batch: from the cached states when the batch carries them (`accel.recipes.eagle3.cached`),
    else from an online forward of the target."""
    ids, valid = batch["ids"], batch["valid"]
    pos = position_ids(valid)
    if "feats" in batch:
        feats, target_logits, greedy, emb_next = cached.target_from_batch(base, batch, draft.draft_ids)
    else:
        feats, target_logits, greedy, emb_next = target_forward(base, draft.feature_layers, ids, valid, pos,
                                                                draft.draft_ids)
    dt = draft.fc.weight.dtype
    return draft.unroll(feats.to(dt), emb_next.to(dt), valid, pos, steps), target_logits, greedy


def ttt_loss(step_logits, target_logits, batch, decay: float):
    """sum_k decay^k * CE(target softmax over the draft vocab, step-k draft) on supervised targets.

    Step k at position t predicts token t+2+k; the target's distribution for it is its logits at
    t+1+k (`target_logits`: over the draft vocabulary). Returns (loss, per-step losses as floats).
    """
    labels, valid = batch["labels"], batch["valid"]
    total = target_logits.new_zeros((), dtype=torch.float32)
    per = []
    for k, lg in enumerate(step_logits):
        n = lg.shape[1] - 2 - k
        if n <= 0:
            per.append(0.0)
            continue
        m = (labels[:, 2 + k:2 + k + n] != -100) & valid[:, :n]
        if not bool(m.any()):
            per.append(0.0)
            continue
        p = torch.softmax(target_logits[:, 1 + k:1 + k + n][m].float(), -1)
        lk = -(p * torch.log_softmax(lg[:, :n][m].float(), -1)).sum(-1).mean()
        total = total + decay ** k * lk
        per.append(float(lk.detach()))
    return total, per


def step_ranks(step_logits, batch, greedy, t2d, max_rank: int):
    """Per unroll step k: rank of the target's greedy token among the draft's logits, and masks.

    `greedy` [B,L]: the target's token j+1 at j (-1: none). Returns (ranks [B,T,K], usable [B,T,K],
    anchor [B,T]) over t = 0..T-1 (T = L-2). usable[...,k]: step k's target is supervised and every
    token the draft consumed up to it (x_{t+1..t+1+k}) is what the target itself would have emitted
    (else decoding never drafts from that prefix). A greedy token outside the draft vocabulary ranks
    max_rank (no draft can propose it).
    """
    ids, labels, valid = batch["ids"], batch["labels"], batch["valid"]
    B, L = ids.shape
    T, K = max(L - 2, 0), len(step_logits)
    consistent = ids[:, 1:] == greedy[:, :-1]       # [B, L-1]: x_{j+1} is the target's own
    ranks = torch.full((B, T, K), max_rank, dtype=torch.long, device=ids.device)
    usable = torch.zeros((B, T, K), dtype=torch.bool, device=ids.device)
    t2d_idx = torch.cumsum(t2d.long(), 0) - 1       # target id -> draft id (where t2d)
    for k, lg in enumerate(step_logits):
        n = L - 2 - k
        if n <= 0:
            continue
        tgt = greedy[:, 1 + k:1 + k + n].clamp(min=0)
        inv = t2d[tgt]
        score = lg[:, :n].float().gather(-1, t2d_idx[tgt].clamp(min=0)[..., None])
        r = (lg[:, :n].float() > score).sum(-1).clamp(max=max_rank)
        ranks[:, :n, k] = torch.where(inv, r, torch.full_like(r, max_rank))
        cons = torch.stack([consistent[:, j:j + n] for j in range(k + 1)], -1).all(-1)
        usable[:, :n, k] = (labels[:, 2 + k:2 + k + n] != -100) & valid[:, :n] & cons
    anchor = (labels[:, 2:2 + T] != -100) & valid[:, :T]  # step 0's target is supervised
    return ranks, usable, anchor


def step_metrics(ranks, usable, anchor, topk: int) -> dict:
    """Per unroll step top-1/top-k accuracy and the simulated acceptance length (top-1 chain)."""
    return rank_metrics(ranks, usable, anchor, topk, lambda k: f"step{k}_acc", lambda k: f"step{k}_top{topk}")


def make_loss(cfg: Config):
    def loss_fn(model, batch):
        m = unwrap(model)
        d = m.draft
        step_logits, target_logits, greedy = forward_draft(d, m.base, batch, cfg.ttt_steps)
        loss, per = ttt_loss(step_logits, target_logits, batch, cfg.step_decay)
        with torch.no_grad():
            ranks, usable, anchor = step_ranks(step_logits, batch, greedy, d.t2d, cfg.topk)
        metrics = step_metrics(ranks, usable, anchor, cfg.topk)
        metrics.update({f"step{k}_loss": v for k, v in enumerate(per)})
        return loss, metrics

    return loss_fn


def draft_statistics(draft, base, held, tok, cfg: Config, tree_nodes: int | None = None, collate_fn=None) -> dict:
    """Held-out per-step top-k accuracy (conditional on every earlier step's true token being in its
    top-k: what a tree can reach), the static tree built from it and simulated acceptance lengths.
    `held`: pairs, or with `collate_fn` whatever it batches (cached sequence indices)."""
    K = cfg.tree_depth or cfg.ttt_steps

    def ranks_of(b):
        step_logits, _, greedy = forward_draft(draft, base, b, K)
        return step_ranks(step_logits, b, greedy, draft.t2d, cfg.topk)

    return held_out_statistics(draft, held, tok, ranks_of, K, cfg.topk, tree_nodes or cfg.tree_nodes,
                               conditional=True, collate_fn=collate_fn)


def run(cfg: Config) -> Path:
    run_dir, adapter, base = frozen_ar_target(cfg, "eagle3", "an EAGLE-3 draft proposes")
    tok = adapter.tokenizer
    if cfg.states:
        return run_cached(cfg, run_dir, adapter, base)
    exs = _examples(cfg, cfg.n_per_task, cfg.seed)
    held = []
    if cfg.eval_n > 0:
        if cfg.data == "builtin":  # fresh prompts of the train split (another seed), never the bench's
            held = _examples(cfg, cfg.eval_n, cfg.seed + 7919)
        elif len(exs) > cfg.eval_n:
            exs, held = exs[:-cfg.eval_n], exs[-cfg.eval_n:]
    pairs = _pairs(adapter, cfg, exs, run_dir / SELF_DISTILL_FILE, "self-distill")
    held_out = _pairs(adapter, cfg, held, run_dir / HELD_OUT_FILE, "self-distill (held-out)") if held else []
    return fit_draft(cfg, run_dir, "draft", build_draft(cfg, adapter, pairs), base, pairs, held_out, tok,
                     make_loss(cfg), lambda d, held: draft_statistics(d, base, held, tok, cfg),
                     lambda k: f"top1_step{k}", save_final)


def run_cached(cfg: Config, run_dir: Path, adapter, base) -> Path:
    """The same training from a states directory (`accel.recipes.eagle3.cached`): its sequences are the
    data (the last eval_n held out), its feature and last hidden states stand in for the target's forward."""
    tok = adapter.tokenizer
    cache = cached.load_states(cfg.states, adapter, feature_layers(cfg, adapter))
    n = len(cache)
    n_held = min(cfg.eval_n, n // 2)
    train_idx, held_idx = list(range(n - n_held)), list(range(n - n_held, n))
    fn = cached.collate(cache, tok.pad_token_id)
    draft = build_draft(cfg, adapter, cached.pairs(cache, train_idx))
    return fit_draft(cfg, run_dir, "draft", draft, base, train_idx, held_idx, tok, make_loss(cfg),
                     lambda d, held: draft_statistics(d, base, held, tok, cfg, collate_fn=fn),
                     lambda k: f"top1_step{k}", save_final, collate_fn=fn)


def save_final(draft, cfg: Config, out: Path, stats: dict | None) -> Path:
    """RUN/final/{draft.safetensors, eagle3.json}, written to a temp dir and renamed into place."""
    return write_final(draft, out, DRAFT_FILE, META_FILE, {
        **draft.config_dict(), "backbone": cfg.backbone, "seed": cfg.seed, "ttt_steps": cfg.ttt_steps,
        "step_decay": cfg.step_decay, "topk": cfg.topk, "tree_depth": cfg.tree_depth or cfg.ttt_steps,
        "tree_nodes": cfg.tree_nodes, "stats": stats})
