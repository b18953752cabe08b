"""The timed decode: every run over every task's prompts in batches, counted into one `RowStats` per
(method, task) — the same counts for every method (docs/architecture.md, "Measuring").

Tokens are generated ids up to and including the first end token (`count_tokens`), so a method
cannot look fast by emitting padding after its answer; each method is warmed up once on a tiny
batch before timing, and a method's row metrics are computed outside the timed call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from accel.decoding.stop import StopStrings


@dataclass
class RowStats:
    """What one (method, task) row accumulated over its batches."""
    correct: int = 0
    """Prompts scored right (a prompt set: identical to greedy, filled in afterwards)."""
    n: int = 0
    """Prompts decoded."""
    nfe: int = 0
    """Full-model forwards, summed over prompts."""
    tokens: int = 0
    """Generated tokens up to and including each prompt's first end token."""
    seconds: float = 0.0
    """Wall clock of the timed decodes (untimed methods leave it 0)."""
    answer_nfe: int = 0
    """Forwards until each prompt's answer held no mask, summed."""
    metrics: dict[str, list] = field(default_factory=dict)
    """{metric: [sum, count]} of a method's row metrics (e.g. the joint sampler's tv)."""

    def __iadd__(self, other: "RowStats") -> "RowStats":
        for f in ("correct", "n", "nfe", "tokens", "seconds", "answer_nfe"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        for metric, (total, count) in other.metrics.items():
            s = self.metrics.setdefault(metric, [0.0, 0])
            s[0] += total
            s[1] += count
        return self


def count_tokens(row: list[int], eos_ids) -> int:
    """Generated ids up to and including the first end token: the same count for every method."""
    for i, t in enumerate(row):
        if t in eos_ids:
            return i + 1
    return len(row)


def texts(adapter, res) -> list[str]:
    """The decoded texts of a result (its own, else the ids without end and mask tokens)."""
    if len(res.texts) == len(res.tokens):
        return res.texts
    drop = set(adapter.eos_ids) | {adapter.mask_id}
    return [adapter.tokenizer.decode([t for t in r if t not in drop]) for r in res.tokens]


def _sync(adapter):
    if torch.cuda.is_available() and str(adapter.device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, adapter, prompts, gen_len):
    """(result, seconds) of one decode call, the GPU synchronised on both sides."""
    res, seconds, _ = timed_cpu(fn, adapter, prompts, gen_len)
    return res, seconds


def timed_cpu(fn, adapter, prompts, gen_len, **kw):
    """(result, wall seconds, CPU seconds of this process) of one decode call. On a CPU shared with other
    jobs the CPU-seconds move much less than the wall clock (a slow spell waits, it does not compute)."""
    _sync(adapter)
    t0, c0 = time.perf_counter(), time.process_time()
    res = fn(adapter, prompts, gen_len, **kw)
    _sync(adapter)
    return res, time.perf_counter() - t0, time.process_time() - c0


def time_runs(runs, examples: dict, encoded: dict, gen_len: int, batch_size: int, score: Callable | None,
              progress: Callable | None = None) -> tuple[dict, dict]:
    """Decodes every task's `examples` with every (name, method, target) run.

    encoded: {id(tokenizer): {task: prompt ids}}. An example's "stop" strings (HumanEval's) end its row where
    the method checks them (`accel.decoding.stop`). score(example, text) -> bool counts `correct`; None
    (a prompt set) keeps the generated rows instead. Returns ({(name, task): RowStats},
    {(name, task): generated rows}).

    Every run is warmed up first; then each batch of prompts is decoded by every run in turn, so a slow spell
    of a shared machine (on this project's 2-core VMs the same forward has measured 39 ms and 47 ms an hour
    apart) falls on all rows alike instead of on whichever row was running: the speedups compare like with like.
    """
    task_names = list(examples)
    total = len(runs) * sum(len(v) for v in examples.values())
    done = 0
    stats: dict[tuple, RowStats] = {}
    outputs: dict[tuple, list] = {}
    for name, fn, tgt in runs:
        a = tgt.adapter
        if progress:
            progress(done, total, f"{name}: warm-up")
        first = examples[task_names[0]][:min(2, batch_size)]
        warm_up(fn, a, encoded[id(a.tokenizer)][task_names[0]][:len(first)], gen_len,
                StopStrings.of(a.tokenizer, [e.get("stop") for e in first]))
    for task in task_names:
        exs = examples[task]
        for i in range(0, len(exs), batch_size):
            for name, fn, tgt in runs:
                a = tgt.adapter
                batch = encoded[id(a.tokenizer)][task][i:i + batch_size]
                stop = StopStrings.of(a.tokenizer, [e.get("stop") for e in exs[i:i + batch_size]])
                res, counted = decode_batch(name, fn, a, batch, gen_len, stop=stop)
                row = stats.setdefault((name, task), RowStats())
                row += counted
                if score is None:
                    outputs.setdefault((name, task), []).extend(res.tokens)
                else:
                    row.correct += sum(bool(score(ex, text)) for ex, text in zip(exs[i:i + batch_size], texts(a, res)))
                done += len(batch)
                if progress:
                    progress(done, total, f"{name}: {task}")
    return stats, outputs


def warm_up(fn, adapter, prompts: list[list[int]], gen_len: int, stop=None) -> None:
    """One untimed decode before the timed ones (allocator, thread pool, a draft's first cost-curve probe),
    with the prompts' own stop strings: unstopped, a HumanEval warm-up ran two rows to 512 tokens, ~30 s
    of nothing measured per method at one thread."""
    fn(adapter, prompts, gen_len, **({"stop": stop} if stop is not None else {}))


def decode_batch(name: str, fn, adapter, batch: list[list[int]], gen_len: int, stop=None):
    """(result, RowStats) of one timed decode of a batch of prompt ids by method `name`: the bench's
    counting, shared with `accel eval` (`accel.evaluation.harness`) so both report the same figures.
    `stop` (`accel.decoding.stop.StopStrings`) goes to methods that end rows at stop strings."""
    res, seconds, cpu = timed_cpu(fn, adapter, batch, gen_len, **({"stop": stop} if stop is not None else {}))
    if len(res.tokens) != len(batch) or len(res.nfe) != len(batch):
        raise RuntimeError(f"method {name} returned {len(res.tokens)} rows / {len(res.nfe)} NFE "
                           f"for {len(batch)} prompts")
    stats = _batch_stats(res, fn, adapter, batch, gen_len, seconds)
    if getattr(fn, "timed", True):  # CPU-seconds per prompt (the report's CPU speedup: tokens / CPU-s)
        stats.metrics["cpu_seconds"] = [cpu, len(batch)]
    return res, stats


def _batch_stats(res, fn, adapter, batch, gen_len, seconds) -> RowStats:
    """One batch's counts. Row metrics: per-prompt lists from ``res.extra["row_metrics"]`` (computed while
    decoding) and from the method's ``row_metrics`` (called here, outside the timed decode, for costly
    measurements such as the joint sampler's TV)."""
    found = dict((res.extra or {}).get("row_metrics") or {})
    if hasattr(fn, "metrics"):
        found.update(fn.metrics(adapter, batch, gen_len))
    return RowStats(n=len(batch), nfe=sum(int(n) for n in res.nfe), seconds=seconds,
                    tokens=sum(count_tokens(r, adapter.eos_ids) for r in res.tokens),
                    answer_nfe=sum(int(n) for n in ((res.extra or {}).get("answer_nfe") or res.nfe)),
                    metrics={m: [float(sum(v)), len(v)] for m, v in found.items()})


def decode_one(adapter, fn, prompt_ids: list[int], gen_len: int) -> dict:
    """One prompt decoded once (`accel decode`): its text, tokens counted as the bench counts them, NFE, seconds."""
    res, seconds = timed(fn, adapter, [prompt_ids], gen_len)
    return {"text": texts(adapter, res)[0], "tokens": count_tokens(res.tokens[0], adapter.eos_ids),
            "nfe": int(res.nfe[0]), "seconds": seconds}
