"""Self-distillation data: the base model's own responses to training prompts, as jsonl.

Medusa/Hydra heads must predict what the *base* will say; when no SFT data matching the base
exists, the base's own greedy outputs are the right targets. Each output line is
``{"prompt", "response", "response_ids"}`` (ids so training re-tokenizes nothing). Batched,
and resumable: lines already in the output file (a prefix of the prompt list) are kept and
decoding continues after them; each batch is appended and fsynced, so an interrupt loses at
most one batch.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


class SelfDistillError(ValueError):
    """Bad prompts source or an output file that does not match; the message says the fix."""


def load_prompts(source: str, tasks: str = "all", n_per_task: int = 256, seed: int = 0) -> list[str]:
    """Prompts from ``suite`` (train split), a .jsonl with "prompt" (or ShareGPT "conversations"/
    "messages": the first user turn), or a ShareGPT .json list."""
    if source == "suite":
        from accel.data.tasks import mixture, resolve_tasks
        names = None if tasks in ("", "all") else [t.strip() for t in tasks.split(",") if t.strip()]
        return [e["prompt"] for e in mixture("train", n_per_task, tasks=resolve_tasks(names), seed=seed)]
    path = Path(source).expanduser()
    if not path.is_file():
        raise SelfDistillError(f"--prompts {source}: no such file; use suite, a .jsonl with a \"prompt\" field "
                               "or ShareGPT conversations")
    if path.suffix == ".json":
        try:
            recs = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SelfDistillError(f"{path}: not valid JSON ({e.msg})") from None
        if not isinstance(recs, list):
            raise SelfDistillError(f"{path}: a .json prompts file must hold a list")
        items = [(f"{path}[{i}]", r) for i, r in enumerate(recs)]
    else:
        items = []
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    items.append((f"{path}:{i}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise SelfDistillError(f"{path}:{i}: not valid JSON ({e.msg})") from None
    out = []
    for where, r in items:
        p = _prompt_of(r)
        if p is None:
            raise SelfDistillError(f"{where}: needs a string \"prompt\" or a conversation with a user turn")
        out.append(p)
    if n_per_task > 0:
        out = out[:n_per_task]
    if not out:
        raise SelfDistillError(f"--prompts {source}: no prompts found")
    return out


def _prompt_of(r) -> str | None:
    if not isinstance(r, dict):
        return None
    if isinstance(r.get("prompt"), str):
        return r["prompt"]
    for turn in r.get("conversations") or r.get("messages") or []:
        if isinstance(turn, dict) and str(turn.get("from", turn.get("role", ""))).lower() in ("human", "user"):
            text = turn.get("value", turn.get("content"))
            return text if isinstance(text, str) else None
    return None


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


def self_distill(adapter, prompts: list[str], out: str | Path, batch_size: int = 64, max_new_tokens: int = 64,
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Writes the base's greedy response to every prompt into `out` (jsonl); returns lines written now."""
    from accel.decoding.ar import generate_greedy
    from accel.decoding.bench import encode_prompt
    from accel.trainers.preempt import stop_guard

    if adapter.kind != "ar":
        raise SelfDistillError("self-distillation regenerates responses with an AR base model; "
                               f"{adapter.source} is a diffusion LM")
    if batch_size < 1 or max_new_tokens < 1:
        raise SelfDistillError("--batch-size and --max-new-tokens must be >= 1")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    start = _done_lines(out, prompts)
    written = 0
    if progress:
        progress(start, len(prompts))
    # sort-free, order-preserving batches: the file stays a prefix of the prompt list
    with open(out, "a") as f, stop_guard("self-distillation data") as stop:
        for i in range(start, len(prompts), batch_size):
            stop.check(f"{i} of {len(prompts)} responses in {out}")
            batch = prompts[i:i + batch_size]
            res = generate_greedy(adapter, [encode_prompt(adapter.tokenizer, p) for p in batch],
                                  max_new_tokens=max_new_tokens)
            for p, toks in zip(batch, res.tokens):
                ids = [t for t in toks if t not in adapter.eos_ids]
                rec = {"prompt": p, "response": adapter.tokenizer.decode(ids), "response_ids": ids}
                f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
            written += len(batch)
            if progress:
                progress(i + len(batch), len(prompts))
    return written
