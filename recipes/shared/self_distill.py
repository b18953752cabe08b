"""Self-distillation data: the base model's own responses to training prompts, as jsonl.

Medusa/Hydra heads must predict what the *base* will say; when no SFT data matching the base
exists, the base's own greedy outputs are the right targets. Each output line is
``{"prompt", "response", "response_ids"}`` (ids so training re-tokenizes nothing). Batched,
and resumable: lines already in the output file (a prefix of the prompt list) are kept and
decoding continues after them; each batch is appended and fsynced, so an interrupt loses at
most one batch.

Named sources (``sharegpt``: the train split's first human turns; ``mtbench``) come from
`accel.data.sources`. With ``states_dir``, each batch also writes the base's last hidden state
at every prompt and response position (the same states a frozen-base head trainer would
recompute with a second full forward) as one safetensors shard: `accel.recipes.shared.state_cache`
reads them back; with ``feature_layers`` also those inner hidden states (what an EAGLE-3 draft
trains on). Capturing them while generating costs nothing extra; on a CPU the separate
forward would cost about a third of the generation time again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch

from accel.core.errors import UserError
from accel.data.prompts import encode_prompt, load_prompts as _load
from accel.data.sources import SourceError, is_english, prompt_records
from accel.decoding.ar import decode_loop, generate_greedy
from accel.decoding.tree import _split_model
from accel.models.kv import cache_kwargs, output_cache
from accel.recipes.shared.state_cache import check_feature_layers, feature_states, prepare_states_dir, write_shard
from accel.trainers.preempt import stop_guard


class SelfDistillError(UserError, ValueError):
    """Bad prompts source or an output file that does not match; the message says the fix."""


def load_prompts(source: str, tasks: str = "all", n_per_task: int = 256, seed: int = 0,
                 english: bool = False) -> list[str]:
    """Prompt texts: ``sharegpt`` (train split, first human turns, seeded order) or ``mtbench`` (first
    turns) by name; else n_per_task per task from the suite, or the first n_per_task of a file
    (`accel.data.prompts`: .jsonl / ShareGPT .json, read record by record). english: keep only
    English prompts."""
    if source in ("sharegpt", "mtbench"):
        try:
            out = [r["prompt"] for r in prompt_records(source, split="train", english=english, seed=seed)]
        except SourceError as e:
            raise SelfDistillError(str(e)) from None
        return out[:n_per_task] if n_per_task > 0 else out
    out = [r["prompt"] for r in _load(source, tasks, n_per_task, seed)]
    if english:
        out = [p for p in out if is_english(p)]
    return out


def _done_lines(out: Path, prompts: list[str]) -> int:
    """How many prompts the existing output already covers (must be a prefix of `prompts`)."""
    if not out.exists():
        return 0
    n = 0
    for i, line in enumerate(out.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise SelfDistillError(f"{out}:{i + 1} is not valid JSON (a torn write?); delete that line to resume") from None
        if n >= len(prompts) or rec.get("prompt") != prompts[n]:
            raise SelfDistillError(f"{out} was written for other prompts (line {i + 1} differs); "
                                   "choose another --out or delete it to start over")
        n += 1
    return n


def fit_prompts(tokenizer, prompts: list[str], max_prompt_tokens: int) -> list[str]:
    """The prompts whose chat-formatted encoding has at most `max_prompt_tokens` tokens (0 = all), in order.

    Long pasted documents dominate ShareGPT's first turns; dropping them (rather than cutting them)
    keeps every prompt a real one and bounds the cost per example.
    """
    if max_prompt_tokens <= 0:
        return prompts
    return [p for p in prompts if len(encode_prompt(tokenizer, p)) <= max_prompt_tokens]


def generate_with_states(adapter, prompts: list[list[int]], max_new_tokens: int, feature_layers=()):
    """Greedy decoding (KV cache, left padding) that also returns the last hidden states.

    Returns (rows, states, features): rows[b] = generated ids up to and including the first end token;
    states[b] = [len(prompt) + len(rows[b]) - 1, H] float16, the base's final-norm hidden state at
    every position whose next token is known (the last generated token is never fed back);
    features[b] the same positions' hidden states `feature_layers`, concatenated (None without them).
    Same tokens as `accel.decoding.ar.generate_greedy`: logits = lm_head(last hidden state).
    """
    body, lm_head = _split_model(adapter.model)
    layers = list(feature_layers)
    hs, fs = [], []

    def step(cur, attn, pos, past):
        o = body(input_ids=cur, attention_mask=attn, position_ids=pos, use_cache=True, **cache_kwargs(body, past),
                 **({"output_hidden_states": True} if layers else {}))
        hs.append(o.last_hidden_state.to(torch.float16).cpu())
        if layers:
            fs.append(feature_states(o, layers).to(torch.float16).cpu())
        return lm_head(o.last_hidden_state[:, -1]).float(), output_cache(o)

    rows, _ = decode_loop(adapter, prompts, max_new_tokens, step)
    P = max(len(p) for p in prompts)

    def per_row(chunks):  # [B, P + steps, .]: column P-1+j is the state that predicted out[:, j]
        t = torch.cat(chunks, 1)
        return [t[b, P - len(p):P - 1 + len(r)].contiguous() for b, (p, r) in enumerate(zip(prompts, rows))]
    return rows, per_row(hs), (per_row(fs) if layers else None)


def self_distill(adapter, prompts: list[str], out: str | Path, batch_size: int = 64, max_new_tokens: int = 64,
                 progress: Callable[[int, int], None] | None = None, states_dir: str | Path | None = None,
                 feature_layers=()) -> int:
    """Writes the base's greedy response to every prompt into `out` (jsonl); returns lines written now.

    With `states_dir`, also the hidden states (see `generate_with_states`; `feature_layers` adds
    those inner ones), one shard per batch, each written before its jsonl lines: a resumed run
    rewrites any shard past the last line.
    """
    if adapter.kind != "ar":
        raise SelfDistillError("self-distillation regenerates responses with an AR base model; "
                               f"{adapter.source} is a diffusion LM")
    if batch_size < 1 or max_new_tokens < 1:
        raise SelfDistillError("--batch-size and --max-new-tokens must be >= 1")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    start = _done_lines(out, prompts)
    layers = check_feature_layers(adapter, feature_layers)
    if layers and states_dir is None:
        raise SelfDistillError("feature layers are cached in a states directory: give --states DIR too")
    if states_dir is not None:
        states_dir = prepare_states_dir(states_dir, adapter, start, layers)
    written = 0
    if progress:
        progress(start, len(prompts))
    # sort-free, order-preserving batches: the file stays a prefix of the prompt list
    with open(out, "a") as f, stop_guard("self-distillation data") as stop:
        for i in range(start, len(prompts), batch_size):
            stop.check(f"{i} of {len(prompts)} responses in {out}")
            batch = prompts[i:i + batch_size]
            enc = [encode_prompt(adapter.tokenizer, p) for p in batch]
            if states_dir is None:
                rows = generate_greedy(adapter, enc, max_new_tokens=max_new_tokens).tokens
            else:
                rows, states, feats = generate_with_states(adapter, enc, max_new_tokens, layers)
                write_shard(states_dir, i, [e + r for e, r in zip(enc, rows)], [len(e) for e in enc], states, feats)
            for p, toks in zip(batch, rows):
                ids = [t for t in toks if t not in adapter.eos_ids]
                rec = {"prompt": p, "response": adapter.tokenizer.decode(ids), "response_ids": ids}
                f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
            written += len(batch)
            if progress:
                progress(i + len(batch), len(prompts))
    return written
