"""Scores and rows: real prompt sets (MT-Bench, ShareGPT, a .jsonl) scored as identical to greedy
decoding, and the per-(method, task) `RowStats` turned into the report's rows.

The task suite's own exact-match/validity score is `accel.data.tasks.score`, applied as the prompts
are decoded (`accel.decoding.timing`); a real prompt has no exact answer, so its quality is whether
the method reproduces greedy decoding of its own target token for token.
"""
from __future__ import annotations

from typing import Callable

from accel.decoding.methods import get_method
from accel.decoding.prompt_sets import identical_count
from accel.decoding.stop import StopStrings
from accel.decoding.timing import RowStats


def score_against_greedy(runs, task_names, encoded, outputs, stats, gen_len: int, batch_size: int,
                         progress: Callable | None = None, examples: dict | None = None) -> None:
    """stats[..].correct = prompts identical to greedy decoding of the method's own target (reference
    decoded untimed, with the examples' stop strings, unless that target's greedy row already ran)."""
    refs = {}
    for name, fn, tgt in runs:
        if name == "greedy" or name.endswith("/greedy"):
            refs.setdefault(id(tgt), {t: outputs[(name, t)] for t in task_names})
    for name, fn, tgt in runs:
        a = tgt.adapter
        if id(tgt) not in refs:
            greedy = get_method("greedy", "ar")
            ref = {}
            for t in task_names:
                ps = encoded[id(a.tokenizer)][t]
                ref[t] = []
                exs = (examples or {}).get(t) or [{}] * len(ps)
                for i in range(0, len(ps), batch_size):
                    stop = StopStrings.of(a.tokenizer, [e.get("stop") for e in exs[i:i + batch_size]])
                    ref[t].extend(greedy(a, ps[i:i + batch_size], gen_len, stop=stop).tokens)
                if progress:
                    progress(0, 0, f"greedy reference: {t}")
            refs[id(tgt)] = ref
        for t in task_names:
            stats[(name, t)].correct = identical_count(outputs[(name, t)], refs[id(tgt)][t], a.eos_ids, gen_len)


def report_rows(method_names, task_names, stats: dict, untimed=()) -> list[dict]:
    """One row per (method, task) and per method over all tasks. Untimed methods (an oracle that reads
    the answer) get no tokens/s and no speedup, and are never the baseline."""
    rows = []
    for scope in list(task_names) + ["all"]:
        tasks = task_names if scope == "all" else [scope]
        base_tps = None
        for m in method_names:
            s = RowStats()
            for t in tasks:
                s += stats[(m, t)]
            tps = s.tokens / s.seconds if s.seconds > 0 else 0.0
            if m in untimed:
                tps = None
            elif base_tps is None:
                base_tps = tps
            rows.append({"method": m, "task": scope, "n": s.n, "accuracy": s.correct / s.n, "nfe": s.nfe / s.n,
                         "tokens": s.tokens, "tokens_per_forward": s.tokens / s.nfe if s.nfe else 0.0,
                         "answer_nfe": s.answer_nfe / s.n,
                         "answer_tokens_per_forward": s.tokens / s.answer_nfe if s.answer_nfe else 0.0,
                         "tokens_per_s": tps, "seconds": s.seconds,
                         "speedup": tps / base_tps if base_tps and tps is not None else None})
            rows[-1].update({metric: total / count for metric, (total, count) in s.metrics.items() if count})
    return rows
