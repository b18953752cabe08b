"""Teacher trajectories: a dLLM's own decodes of training prompts, stored as an arrow dataset.

Self-distillation recipes (dParallel, D2F) train the student to reproduce what the teacher
wrote, not a reference answer: the teacher's output is what the student can match, and
matching it keeps quality while the recipe changes *how* it is decoded. Decoding is LLaDA's
semi-AR low-confidence sampler (one token per step, block 32, temperature 0, the slow
high-quality baseline). Where a checker exists the wrong answers are dropped: the built-in
tasks are scored with `accel.data.tasks.score`; user prompts may carry an ``answer`` (kept
when the response, or its part after the last ``#``, equals it after whitespace removal).

Layout of ``OUT``::

    trajectories.json   metadata: teacher, gen_len, block_len, prompt source, counts, complete
    shards/00000/ ...   one `Dataset.save_to_disk` per shard_size prompts (resume unit)
    data/               the merged dataset (columns: prompt, prompt_ids, response_ids,
                        response, task, source); `load_trajectories(OUT)` reads it

``response_ids`` is the whole gen_len canvas: the response up to its first end token, then
end tokens to gen_len — what a student must reproduce, padding included (that is how a dLLM
learns to stop). Shards are written atomically (temp dir + rename), so an interrupted run
resumes at the first missing shard; a resume with different settings is refused.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from datasets import Dataset, Features, Sequence, Value, concatenate_datasets, disable_progress_bars, load_from_disk
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from accel.core.errors import UserError
from accel.core.files import atomic_dir, write_atomic
from accel.data.prompts import load_prompt_records
from accel.data.tasks import score
from accel.data.tokenizer import chat_prompt_ids
from accel.decoding import dllm
from accel.models.weights import weights_stamp
from accel.trainers.preempt import stop_guard

META_FILE = "trajectories.json"
DATA_DIR = "data"
SHARDS_DIR = "shards"


class TrajectoryError(UserError, ValueError):
    """Bad trajectory input (prompt source, settings, output dir); the message says the fix."""


# ------------------------------------------------------------------ prompts
load_prompts = load_prompt_records  # {prompt, answer, task, source, example}: accel.data.prompts


def _norm(s: str) -> str:
    return "".join(s.split())


def is_correct(record: dict, text: str) -> bool | None:
    """True/False when the record has a checker, None when it has none (kept unverified)."""
    if record.get("example") is not None:
        return bool(score(record["example"], text))
    ans = record.get("answer")
    if ans is None:
        return None
    t, a = _norm(text), _norm(ans)
    return t == a or ("#" in t and t.rsplit("#", 1)[1] == a)


# ------------------------------------------------------------------ generation
def fingerprint(records: list[dict], settings: dict) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for r in records:
        h.update(r["prompt"].encode() + b"\0")
    return h.hexdigest()[:16]


def _features():
    return Features({"prompt": Value("string"), "prompt_ids": Sequence(Value("int32")),
                     "response_ids": Sequence(Value("int32")), "response": Value("string"),
                     "task": Value("string"), "source": Value("string")})


def canvas(tokens: list[int], gen_len: int, eos_id: int) -> list[int]:
    """The gen_len response canvas: tokens up to the first end token, then end-token padding."""
    return (list(tokens) + [eos_id] * gen_len)[:gen_len]


def generate_trajectories(adapter, records: list[dict], out_dir, gen_len: int = 64, block_len: int = 32,
                          batch_size: int = 32, shard_size: int = 256, filter_correct: bool = True,
                          teacher: str | None = None, progress: bool = True) -> Path:
    """Decodes every record's prompt with `adapter` and writes OUT (layout: module docstring).

    Resumable: completed shards are kept and skipped. Returns OUT.
    """
    if adapter.kind != "dllm":
        raise TrajectoryError(f"teacher {adapter.source} is an {adapter.kind} model; trajectories need a dLLM")
    if gen_len < 1 or block_len < 1 or gen_len % block_len:
        raise TrajectoryError(f"gen_len={gen_len} must be a positive multiple of block_len={block_len}")
    if batch_size < 1 or shard_size < 1:
        raise TrajectoryError("batch_size and shard_size must be >= 1")
    out = Path(out_dir).expanduser()
    settings = {"teacher": teacher or str(adapter.source), "weights": weights_stamp(str(adapter.source)),
                "gen_len": gen_len, "block_len": block_len, "filter_correct": filter_correct,
                "shard_size": shard_size, "sampler": "vanilla", "steps": gen_len, "temperature": 0.0}
    fp = fingerprint(records, settings)
    meta_file = out / META_FILE
    if meta_file.exists():
        old = json.loads(meta_file.read_text())
        if old.get("fingerprint") != fp:
            raise TrajectoryError(f"{out} holds trajectories made with other settings or prompts "
                                  f"({ {k: old.get(k) for k in settings} }); remove it or choose another output dir")
        if old.get("complete"):
            return out
    out.mkdir(parents=True, exist_ok=True)
    meta = {**settings, "fingerprint": fp, "n_prompts": len(records), "complete": False,
            "prompt_source": sorted({r["source"] for r in records})}
    _write_json(meta_file, meta)

    disable_progress_bars()  # per-shard "Saving the dataset" bars; ours is the one over prompts
    tok = adapter.tokenizer
    eos = adapter.eos_ids[0]
    shards = out / SHARDS_DIR
    shards.mkdir(exist_ok=True)
    n_shards = -(-len(records) // shard_size)
    with stop_guard("dLLM trajectory data") as stop:
        bar = _Bar(len(records), progress)
        try:
            for si in range(n_shards):
                final = shards / f"{si:05d}"
                part = records[si * shard_size:(si + 1) * shard_size]
                if (final / "state.json").exists():
                    bar.advance(len(part))
                    continue
                cols = {k: [] for k in ("prompt", "prompt_ids", "response_ids", "response", "task", "source")}
                checked = kept = correct = 0
                for bi in range(0, len(part), batch_size):
                    stop.check(f"{si} of {n_shards} shards in {out}")
                    batch = part[bi:bi + batch_size]
                    ids = [chat_prompt_ids(tok, r["prompt"]) for r in batch]
                    res = dllm.generate_vanilla(adapter, ids, gen_len=gen_len, block_len=block_len, steps=gen_len)
                    for r, p, toks, text in zip(batch, ids, res.tokens, res.texts):
                        ok = is_correct(r, text)
                        checked += ok is not None
                        correct += bool(ok)
                        if filter_correct and ok is False:
                            continue
                        kept += 1
                        cols["prompt"].append(r["prompt"])
                        cols["prompt_ids"].append(list(p))
                        cols["response_ids"].append(canvas(toks, gen_len, eos))
                        cols["response"].append(text)
                        cols["task"].append(r["task"])
                        cols["source"].append(r["source"])
                    bar.advance(len(batch))
                with atomic_dir(final) as tmp:
                    Dataset.from_dict(cols, features=_features()).save_to_disk(str(tmp))
                    (tmp / "counts.json").write_text(json.dumps({"n": len(part), "checked": checked,
                                                                 "correct": correct, "kept": kept}))
        finally:
            bar.close()
    counts = [json.loads((shards / f"{i:05d}" / "counts.json").read_text()) for i in range(n_shards)]
    # an all-wrong shard is empty, and an empty saved dataset has no arrow table to load
    parts = [load_from_disk(str(shards / f"{i:05d}")) for i in range(n_shards) if counts[i]["kept"]]
    ds = concatenate_datasets(parts) if parts else None
    if ds is None:
        raise TrajectoryError(f"no trajectory passed the answer check ({sum(c['checked'] for c in counts)} checked); "
                              "use a better-trained teacher or filter_correct=false")
    with atomic_dir(out / DATA_DIR, may_replace=lambda p: True) as tmp:
        ds.save_to_disk(str(tmp))
    checked = sum(c["checked"] for c in counts)
    meta.update(complete=True, n_kept=len(ds), n_checked=checked,
                teacher_accuracy=(sum(c["correct"] for c in counts) / checked) if checked else None)
    _write_json(meta_file, meta)
    return out


def load_trajectories(path):
    """(datasets.Dataset, metadata dict) of a completed trajectory directory."""
    p = Path(path).expanduser()
    meta_file = p / META_FILE
    if not meta_file.exists():
        raise TrajectoryError(f"{p} is not a trajectory directory (no {META_FILE}); make one with "
                              "`accel data trajectories --out DIR`")
    meta = json.loads(meta_file.read_text())
    if not meta.get("complete") or not (p / DATA_DIR).is_dir():
        raise TrajectoryError(f"{p} is incomplete; re-run `accel data trajectories` with the same settings to resume")
    return load_from_disk(str(p / DATA_DIR)), meta


def is_complete(path) -> bool:
    try:
        return bool(json.loads((Path(path).expanduser() / META_FILE).read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def _write_json(path: Path, obj: dict) -> None:
    write_atomic(path, json.dumps(obj, indent=1) + "\n")


class _Bar:
    """A rich progress bar over prompts (a no-op when progress=False)."""

    def __init__(self, total: int, enabled: bool):
        self.p = None
        if enabled:
            self.p = Progress(TextColumn("[bold]trajectories"), BarColumn(), MofNCompleteColumn(),
                              TimeRemainingColumn(), transient=False)
            self.p.start()
            self.t = self.p.add_task("traj", total=total)

    def advance(self, n: int):
        if self.p is not None:
            self.p.advance(self.t, n)

    def close(self):
        if self.p is not None:
            self.p.stop()
            self.p = None
