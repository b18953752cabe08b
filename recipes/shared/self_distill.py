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

from accel.core.errors import UserError
from accel.data.prompts import load_prompts as _load


class SelfDistillError(UserError, ValueError):
    """Bad prompts source or an output file that does not match; the message says the fix."""


def load_prompts(source: str, tasks: str = "all", n_per_task: int = 256, seed: int = 0) -> list[str]:
    """Prompt texts: n_per_task per task from the suite, or the first n_per_task of a file (`accel.data.prompts`)."""
    return [r["prompt"] for r in _load(source, tasks, n_per_task, seed)]


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
    from accel.data.prompts import encode_prompt
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
