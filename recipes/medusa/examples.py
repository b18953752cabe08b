"""Medusa training examples: (token ids, loss mask) pairs from the suite, {prompt, response} jsonl or
ShareGPT conversations, and their left-padded batches. Both the live training (`train.py`) and the
cached-states training (`cached.py`) read their data through here."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from accel.core.errors import UserError
from accel.data.prompts import encode_prompt
from accel.data.roles import chat_role
from accel.data.tasks import generate, resolve_tasks
from accel.recipes.medusa.config import Config


def _err(msg):
    return UserError(msg)


def prompt_ids(tok, prompt: str) -> list[int]:
    return encode_prompt(tok, prompt)


def pair_example(tok, prompt: str, response: str | None, response_ids=None) -> tuple[list[int], list[bool]]:
    """(ids, loss mask): chat-formatted prompt, then response + end token supervised."""
    p = prompt_ids(tok, prompt)
    r = list(response_ids) if response_ids is not None else tok(response, add_special_tokens=False)["input_ids"]
    r = r + [tok.eos_token_id]
    return p + r, [False] * len(p) + [True] * len(r)


def sharegpt_example(tok, conv: list[dict], where: str) -> tuple[list[int], list[bool]]:
    """Whole conversation in the chat template; loss on the tokens of assistant turns only."""
    if not getattr(tok, "chat_template", None):
        raise _err(f"{where}: ShareGPT data needs a tokenizer with a chat template")
    msgs = []
    for m in conv:
        role = chat_role(m)
        text = m.get("value", m.get("content"))
        if role is None or not isinstance(text, str):
            raise _err(f"{where}: each turn needs from/role (human, gpt, user, assistant, system) and value/content")
        msgs.append({"role": role, "content": text})

    def render(ms, gen):
        return list(tok.apply_chat_template(ms, add_generation_prompt=gen, tokenize=True, return_dict=False))

    ids = render(msgs, False)
    mask = [False] * len(ids)
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        pre, full = render(msgs[:i], True), render(msgs[:i + 1], False)
        if full[:len(pre)] != pre or ids[:len(full)] != full:
            raise _err(f"{where}: the chat template does not render conversations prefix-consistently; "
                       "convert the data to {prompt, response} jsonl")
        for j in range(len(pre), len(full)):
            mask[j] = True
    if not any(mask):
        raise _err(f"{where}: the conversation has no assistant turn to train on")
    return ids, mask


def _read_records(path: Path) -> list[tuple[str, object]]:
    text = path.read_text()
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise _err(f"{path}: not valid JSON ({e.msg})") from None
        if not isinstance(data, list):
            raise _err(f"{path}: a .json data file must hold a list of conversations")
        return [(f"{path}[{i}]", r) for i, r in enumerate(data)]
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((f"{path}:{i}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise _err(f"{path}:{i}: not valid JSON ({e.msg})") from None
    return out


def load_examples(cfg: Config, tok) -> tuple[list, list]:
    """(train, held-out) lists of (ids, loss mask)."""
    if cfg.data == "builtin":
        train, held = [], []
        for t in resolve_tasks(cfg.tasks or None):
            exs = generate(t, "train", cfg.n_per_task + cfg.eval_n, cfg.seed)
            train += [pair_example(tok, e["prompt"], e["response"]) for e in exs[:cfg.n_per_task]]
            held += [pair_example(tok, e["prompt"], e["response"]) for e in exs[cfg.n_per_task:]]
        return train, held
    path = Path(cfg.data).expanduser()
    if not path.is_file():
        raise _err(f"data={cfg.data}: no such file; pass builtin, a .jsonl of {{prompt, response}} or ShareGPT data "
                   "(`accel data self-distill` writes the jsonl)")
    exs = []
    for where, rec in _read_records(path):
        if not isinstance(rec, dict):
            raise _err(f"{where}: expected an object")
        if "conversations" in rec or "messages" in rec:
            conv = rec.get("conversations", rec.get("messages"))
            if not isinstance(conv, list):
                raise _err(f"{where}: conversations/messages must be a list of turns")
            exs.append(sharegpt_example(tok, conv, where))
        elif isinstance(rec.get("prompt"), str) and isinstance(rec.get("response"), str):
            exs.append(pair_example(tok, rec["prompt"], rec["response"], rec.get("response_ids")))
        else:
            raise _err(f"{where}: each record needs string prompt and response, or a ShareGPT conversations list")
    if len(exs) < 2:
        raise _err(f"data={cfg.data}: need at least 2 examples (got {len(exs)})")
    n_held = max(1, len(exs) // 20)
    return exs[:-n_held], exs[-n_held:]


def collate(examples, pad_id: int):
    """Left-padded ids, validity and labels (-100 off the loss mask)."""
    L = max(len(ids) for ids, _ in examples)
    B = len(examples)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    valid = torch.zeros((B, L), dtype=torch.bool)
    labels = torch.full((B, L), -100, dtype=torch.long)
    for i, (x, m) in enumerate(examples):
        s = L - len(x)
        ids[i, s:] = torch.tensor(x)
        valid[i, s:] = True
        labels[i, s:] = torch.where(torch.tensor(m), torch.tensor(x), torch.tensor(-100))
    return {"ids": ids, "valid": valid, "labels": labels}
