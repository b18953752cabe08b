"""Supervised (prompt, response) pairs from the task suite or a jsonl file: what SFT and the draft-head
recipes train on (`cfg.data`: ``builtin`` or a path, plus ``n_per_task``, ``tasks`` and ``seed``)."""
from __future__ import annotations

import json
from pathlib import Path


def load_pairs(cfg, tok) -> list[tuple[list[int], list[int]]]:
    from accel.data.collate import tokenize_examples
    if cfg.data == "builtin":
        from accel.data.tasks import mixture, resolve_tasks
        exs = mixture("train", cfg.n_per_task, tasks=resolve_tasks(cfg.tasks or None), seed=cfg.seed)
        return tokenize_examples(tok, exs)
    from accel.core.errors import UserError
    path = Path(cfg.data).expanduser()
    if not path.is_file():
        raise UserError(f"data={cfg.data}: no such file; pass a .jsonl with one {{\"prompt\", \"response\"}} per line")
    exs = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            ex = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        if not isinstance(ex, dict) or not isinstance(ex.get("prompt"), str) or not isinstance(ex.get("response"), str):
            raise UserError(f"{path}:{i}: each line must be an object with string fields prompt and response")
        exs.append(ex)
    if not exs:
        raise UserError(f"data={cfg.data}: the file has no examples")
    return tokenize_examples(tok, exs)
