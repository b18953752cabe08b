"""Supervised (prompt, response) pairs from the task suite or a jsonl file: what SFT and the draft-head
recipes train on (`cfg.data`: ``builtin`` or a path, plus ``n_per_task``, ``tasks`` and ``seed``)."""
from __future__ import annotations

import json
from pathlib import Path

from accel.core.errors import UserError
from accel.data.collate import tokenize_examples
from accel.data.tasks import mixture, resolve_tasks


def load_examples(data: str, n_per_task: int, tasks, seed: int, need_response: bool = True) -> list[dict]:
    """{prompt, response} dicts from the suite's train split (``data=builtin``) or a jsonl file.

    `need_response=False` accepts prompt-only lines (recipes that regenerate the responses with the base)."""
    if data == "builtin":
        return mixture("train", n_per_task, tasks=resolve_tasks(tasks or None), seed=seed)
    path = Path(data).expanduser()
    if not path.is_file():
        raise UserError(f"data={data}: no such file; pass a .jsonl with one {{\"prompt\", \"response\"}} per line")
    exs = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            ex = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        if not isinstance(ex, dict) or not isinstance(ex.get("prompt"), str) or (
                need_response and not isinstance(ex.get("response"), str)):
            need = "string fields prompt and response" if need_response else "a string field prompt (and response)"
            raise UserError(f"{path}:{i}: each line must be an object with {need}")
        exs.append(ex)
    if not exs:
        raise UserError(f"data={data}: the file has no examples")
    return exs


def load_pairs(cfg, tok) -> list[tuple[list[int], list[int]]]:
    """Tokenized (prompt, response) pairs of `cfg.data` (see `load_examples`)."""
    return tokenize_examples(tok, load_examples(cfg.data, cfg.n_per_task, cfg.tasks, cfg.seed))
