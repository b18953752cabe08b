"""Cached base hidden states for frozen-base draft-head training (Medusa-1, Hydra), on disk.

With a frozen base, every epoch would recompute the same 30-layer forward for the heads' input;
on a CPU that forward costs more than the heads themselves once the vocabulary is truncated. The
states are computed once — while self-distilling (`accel.recipes.shared.self_distill`) or by
`compute_states` for any {prompt, response} data — and stored as safetensors shards:

    DIR/meta.json                      backbone, its weights stamp, hidden size
    DIR/shard-<start>.safetensors      h [T, H] float16, ids [T'] int32, offsets [n+1], prompt_len [n]

Sequence i of a shard is ``ids[offsets[i]:offsets[i+1]]`` (prompt + response, the end token
included) and its states are the rows ``offsets[i] - i .. offsets[i+1] - i - 1`` of h: one per
position whose next token is known (state j predicts token j+1). Shards are named by the index
of their first example, written whole and renamed, so an interrupted build resumes after the
last complete shard.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from accel.core.errors import UserError
from accel.decoding.dllm import left_pad
from accel.decoding.tree import _split_model
from accel.models.masks import position_ids
from accel.models.weights import weights_stamp


class StateCacheError(UserError, ValueError):
    """A cache directory that does not match the model or is incomplete; the message says the fix."""


def _meta(adapter) -> dict:
    cfg = adapter.model.config
    return {"backbone": str(adapter.source), "stamp": weights_stamp(str(adapter.source)),
            "hidden_size": int(getattr(cfg, "hidden_size", 0)), "format": 1}


def prepare_states_dir(path, adapter, start: int) -> Path:
    """Creates/validates DIR for `adapter`; drops shards at or past example `start` (they get rewritten)."""
    path = Path(path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    meta = _meta(adapter)
    mf = path / "meta.json"
    if mf.exists():
        old = json.loads(mf.read_text())
        if (old.get("stamp"), old.get("hidden_size")) != (meta["stamp"], meta["hidden_size"]):
            raise StateCacheError(f"{path} holds states of another model ({old.get('backbone')}); "
                                  "choose another states directory or delete it")
    else:
        mf.write_text(json.dumps(meta, indent=2) + "\n")
    for f in path.glob("shard-*.safetensors*"):
        if f.name.endswith(".tmp") or _shard_start(f) >= start:
            f.unlink()
    return path


def _shard_start(f: Path) -> int:
    return int(f.name.split("-", 1)[1].split(".", 1)[0])


def write_shard(states_dir: Path, start: int, seqs: list[list[int]], prompt_lens: list[int], states: list):
    """One batch's states as states_dir/shard-<start>.safetensors (written whole, then renamed).

    `seqs` are the full token sequences (prompt + response), `states` one [len - 1, H] tensor each
    (see the module docstring); self-distillation writes them while generating, `compute_states`
    with full forwards."""
    h = torch.cat(states, 0)
    if not torch.isfinite(h).all():
        raise StateCacheError("hidden states overflow float16; this model's states cannot be cached as float16")
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    tensors = {"h": h, "ids": torch.tensor([t for s in seqs for t in s], dtype=torch.int32),
               "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)]),
               "prompt_len": torch.tensor(prompt_lens, dtype=torch.long)}
    path = states_dir / f"shard-{start:07d}.safetensors"
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"start": str(start), "n": str(len(seqs))})
    os.replace(tmp, path)


@dataclass
class Sequence:
    ids: list[int]
    prompt_len: int
    row: int
    """Index of this sequence's first state in `StateCache.h`."""


class StateCache:
    """All shards of DIR in memory: `h` [sum of states, H] float16 and the sequences indexing it."""

    def __init__(self, path, expect_n: int | None = None, adapter=None):
        self.path = Path(path).expanduser()
        mf = self.path / "meta.json"
        if not mf.exists():
            raise StateCacheError(f"{self.path} is not a states directory (no meta.json)")
        self.meta = json.loads(mf.read_text())
        if adapter is not None and _meta(adapter)["stamp"] != self.meta.get("stamp"):
            raise StateCacheError(f"{self.path} holds states of {self.meta.get('backbone')}, not of {adapter.source}; "
                                  "rebuild them (delete the directory)")
        hs, self.seqs, row, nxt = [], [], 0, 0
        for f in sorted(self.path.glob("shard-*.safetensors"), key=_shard_start):
            if _shard_start(f) != nxt:
                raise StateCacheError(f"{self.path}: shard {f.name} does not follow example {nxt}; the directory "
                                      "is incomplete (rerun the command that writes it: it resumes)")
            t = load_file(str(f))
            off, pl, ids = t["offsets"].tolist(), t["prompt_len"].tolist(), t["ids"].tolist()
            for i in range(len(pl)):
                seq = ids[off[i]:off[i + 1]]
                self.seqs.append(Sequence(seq, pl[i], row))
                row += len(seq) - 1
            if t["h"].shape[0] != off[-1] - len(pl):
                raise StateCacheError(f"{f}: {t['h'].shape[0]} states for {off[-1] - len(pl)} positions (corrupt shard)")
            hs.append(t["h"])
            nxt += len(pl)
        if expect_n is not None and nxt < expect_n:
            raise StateCacheError(f"{self.path} holds states for {nxt} of {expect_n} examples; rerun the command "
                                  "that writes it (it resumes)")
        self.h = torch.cat(hs, 0) if hs else torch.zeros(0, int(self.meta.get("hidden_size", 0)), dtype=torch.float16)

    def __len__(self) -> int:
        return len(self.seqs)


def compute_states(adapter, examples: list[list[int]], prompt_lens: list[int], path, batch_size: int = 8,
                   progress=None) -> Path:
    """Writes the states of `examples` (full token sequences) to `path` with full forwards; resumable."""
    path = Path(path).expanduser()
    done = 0  # examples covered by the leading run of complete shards
    if (path / "meta.json").exists():
        for f in sorted(path.glob("shard-*.safetensors"), key=_shard_start):
            if _shard_start(f) != done:
                break
            with safe_open(str(f), "pt") as st:
                done += int(st.metadata()["n"])
    prepare_states_dir(path, adapter, done)
    body, _ = _split_model(adapter.model)
    if progress:
        progress(done, len(examples))
    with torch.no_grad():
        for i in range(done, len(examples), batch_size):
            batch = examples[i:i + batch_size]
            ids, valid = left_pad(batch, adapter.pad_id, adapter.device)
            h = body(input_ids=ids, attention_mask=valid.long(), position_ids=position_ids(valid)).last_hidden_state
            P = ids.shape[1]
            states = [h[b, P - len(s):P - 1].to(torch.float16).cpu() for b, s in enumerate(batch)]
            write_shard(path, i, batch, prompt_lens[i:i + batch_size], states)
            if progress:
                progress(i + len(batch), len(examples))
    return path
