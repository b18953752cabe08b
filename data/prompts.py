"""Prompts: where they come from, and how they become the token ids a model decodes from.

One loader (`load_prompt_records`) for every data generator and recipe, so the same sources
work everywhere: ``builtin`` (alias ``suite``: the task suite's train split), a ``.jsonl`` of
{"prompt", optional "answer"/"task"} objects or ShareGPT-style conversations, a ``.json``
list of the same, or a directory holding an HF dataset saved with ``save_to_disk``.
A new prompt source is one more branch in `read_prompt_source`.

`encode_prompt` is the one encoder, so a prompt is tokenised the same way at training time
and at benchmark time.
"""
from __future__ import annotations

import json
from pathlib import Path

from datasets import load_from_disk

from accel.core.errors import UserError
from accel.data.roles import chat_role
from accel.data.sources import SourceError, read_json_records
from accel.data.tasks import TASKS, mixture, resolve_tasks
from accel.data.tokenizer import chat_prompt_ids

BUILTIN_SOURCES = ("builtin", "suite")
SOURCES_HELP = "builtin, a .jsonl/.json file with a 'prompt' field (or ShareGPT conversations) or an HF dataset dir"


class PromptSourceError(UserError, ValueError):
    """A prompt source that cannot be read; the message names the file and line."""


def task_names(tasks) -> list[str] | None:
    """'copy,sort' / ['copy', 'sort'] / 'all' / None -> a list of names (None: every task)."""
    if tasks is None or tasks in ("", "all"):
        return None
    names = [t.strip() for t in tasks.split(",") if t.strip()] if isinstance(tasks, str) else list(tasks)
    return names or None


def load_prompt_records(source: str = "builtin", tasks=None, n_per_task: int = 128, seed: int = 0,
                        limit: int = 0) -> list[dict]:
    """Prompt records {prompt, answer, task, source, example} from a prompt source.

    builtin: `n_per_task` train-split prompts per task (`tasks`; default all), each with its suite
    example so answers can be scored. Files: every record (`tasks` must not be set). limit > 0
    keeps the first `limit`.
    """
    if source in BUILTIN_SOURCES:
        exs = mixture("train", n_per_task, tasks=resolve_tasks(task_names(tasks)), seed=seed)
        recs = [{"prompt": e["prompt"], "answer": e["answer"], "task": e["task"], "source": "builtin",
                 "example": e} for e in exs]
    else:
        if task_names(tasks):
            raise PromptSourceError(f"tasks={tasks} only applies to the builtin prompt source, not {source}")
        recs = read_prompt_source(Path(source).expanduser())
    if limit > 0:
        recs = recs[:limit]
    if not recs:
        raise PromptSourceError(f"prompt source {source} has no prompts")
    return recs


def load_prompts(source: str = "builtin", tasks=None, n: int = 128, seed: int = 0) -> list[dict]:
    """Records of `source`: `n` prompts per task from the suite, or the first `n` (0 = all) of a file."""
    if source in BUILTIN_SOURCES:
        return load_prompt_records(source, tasks, n, seed)
    return load_prompt_records(source, None if task_names(tasks) is None else tasks, limit=n)


def read_prompt_source(path: Path) -> list[dict]:
    """Records of a prompt file or dataset directory (see the module docstring for the formats)."""
    items: list[tuple[str, object]] = []
    if path.is_file() and path.suffix == ".jsonl":
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    items.append((f"{path}:{i}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise PromptSourceError(f"{path}:{i}: not valid JSON ({e.msg})") from None
    elif path.is_file() and path.suffix == ".json":
        try:
            recs, _ = read_json_records(path)  # record by record: ShareGPT's own file is truncated
        except SourceError as e:
            raise PromptSourceError(f"{path}: {e}") from None
        items = [(f"{path}[{i}]", r) for i, r in enumerate(recs)]
    elif path.is_dir():
        try:
            ds = load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as e:
            raise PromptSourceError(f"{path}: not an HF dataset saved with save_to_disk "
                                    f"({str(e).splitlines()[0]}); pass {SOURCES_HELP}") from None
        if hasattr(ds, "keys") and not hasattr(ds, "column_names"):  # a DatasetDict: take 'train'
            if "train" not in ds:
                raise PromptSourceError(f"{path}: a DatasetDict without a 'train' split (has {list(ds.keys())})")
            ds = ds["train"]
        items = [(f"{path} record {i}", r) for i, r in enumerate(ds, 1)]
    elif not path.exists():
        raise PromptSourceError(f"prompt source {path}: no such file or directory; pass {SOURCES_HELP}")
    else:
        raise PromptSourceError(f"prompt source {path}: pass {SOURCES_HELP}")
    out = []
    for where, r in items:
        prompt = prompt_of(r)
        if prompt is None:
            raise PromptSourceError(f"{where}: needs a string 'prompt' field or a conversation with a user turn")
        ans, task = r.get("answer"), str(r.get("task") or "user")
        meta = r.get("meta") or {}
        ex = None
        if task in TASKS and (ans is not None or "items" in meta):  # a suite task: scored like the suite
            ex = {"task": task, "answer": None if ans is None else str(ans), "meta": meta}
        out.append({"prompt": prompt, "answer": None if ans is None else str(ans), "task": task,
                    "source": str(path), "example": ex})
    return out


def prompt_of(r) -> str | None:
    """A record's prompt: its "prompt" string, or the first user turn of a ShareGPT conversation."""
    if not isinstance(r, dict):
        return None
    if isinstance(r.get("prompt"), str):
        return r["prompt"]
    for turn in r.get("conversations") or r.get("messages") or []:
        if isinstance(turn, dict) and chat_role(turn) == "user":
            text = turn.get("value", turn.get("content"))
            return text if isinstance(text, str) else None
    return None


def encode_prompt(tokenizer, text) -> list[int]:
    """User text, or a conversation (a list of {"role", "content"} messages ending with a user turn), in
    the model's chat format (plain encoding of the turns one per line when it has no chat template)."""
    if getattr(tokenizer, "chat_template", None):
        ids = chat_prompt_ids(tokenizer, text)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    if not isinstance(text, str):
        text = "\n".join(m["content"] for m in text)
    return list(tokenizer(text)["input_ids"])
