"""Cached base hidden states for frozen-base draft-head training (Medusa-1, Hydra), on disk.

With a frozen base, every epoch would recompute the same 30-layer forward for the heads' input;
on a CPU that forward costs more than the heads themselves once the vocabulary is truncated. The
states are computed once — while self-distilling (`accel.recipes.shared.self_distill`) or by
`compute_states` for any {prompt, response} data — and stored as safetensors shards:

    DIR/meta.json                      backbone, its weights stamp, hidden size, feature layers
    DIR/shard-<start>.safetensors      h [T, H] float16, ids [T'] int32, offsets [n+1], prompt_len [n],
                                       with feature layers also f [T, len(layers) * H] float16

Sequence i of a shard is ``ids[offsets[i]:offsets[i+1]]`` (prompt + response, the end token
included) and its states are the rows ``offsets[i] - i .. offsets[i+1] - i - 1`` of h: one per
position whose next token is known (state j predicts token j+1). Shards are named by the index
of their first example, written whole and renamed, so an interrupted build resumes after the
last complete shard.

Feature layers (``feature_layers``, indices into the model's ``hidden_states``: the input of that
layer) are what an EAGLE-3 draft fuses: with them cached, its training reads `f` and `h` instead of
running the frozen target every step (`accel.recipes.eagle3.train`), which on a CPU is most of a
step's cost. They cost disk (SmolLM2-135M, three layers: 3.5 KB a token), not time: the forward
that generates computes them anyway.
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


def _meta(adapter, feature_layers=()) -> dict:
    cfg = adapter.model.config
    return {"backbone": str(adapter.source), "stamp": weights_stamp(str(adapter.source)),
            "hidden_size": int(getattr(cfg, "hidden_size", 0)), "feature_layers": list(feature_layers), "format": 1}


def check_feature_layers(adapter, feature_layers) -> list[int]:
    """The layer indices as ints, or StateCacheError naming the valid range (0 = the embeddings' output)."""
    n = int(getattr(adapter.model.config, "num_hidden_layers", 0))
    out = [int(i) for i in feature_layers]
    bad = [i for i in out if not 0 <= i <= n]
    if bad:
        raise StateCacheError(f"feature layers {out}: give hidden-state indices in 0..{n} "
                              f"({adapter.source} has {n} layers)")
    return out


def prepare_states_dir(path, adapter, start: int, feature_layers=()) -> Path:
    """Creates/validates DIR for `adapter`; drops shards at or past example `start` (they get rewritten)."""
    path = Path(path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    meta = _meta(adapter, feature_layers)
    mf = path / "meta.json"
    if mf.exists():
        old = json.loads(mf.read_text())
        if (old.get("stamp"), old.get("hidden_size")) != (meta["stamp"], meta["hidden_size"]):
            raise StateCacheError(f"{path} holds states of another model ({old.get('backbone')}); "
                                  "choose another states directory or delete it")
        if list(old.get("feature_layers", [])) != meta["feature_layers"]:
            raise StateCacheError(f"{path} holds feature layers {old.get('feature_layers', [])}, not "
                                  f"{meta['feature_layers']}; choose another states directory or delete it")
    else:
        mf.write_text(json.dumps(meta, indent=2) + "\n")
    for f in path.glob("shard-*.safetensors*"):
        if f.name.endswith(".tmp") or _shard_start(f) >= start:
            f.unlink()
    return path


def _shard_start(f: Path) -> int:
    return int(f.name.split("-", 1)[1].split(".", 1)[0])


def write_shard(states_dir: Path, start: int, seqs: list[list[int]], prompt_lens: list[int], states: list,
                features: list | None = None):
    """One batch's states as states_dir/shard-<start>.safetensors (written whole, then renamed).

    `seqs` are the full token sequences (prompt + response), `states` one [len - 1, H] tensor each
    and `features` (with feature layers) one [len - 1, layers * H] each (see the module docstring);
    self-distillation writes them while generating, `compute_states` with full forwards."""
    h = torch.cat(states, 0)
    f = torch.cat(features, 0) if features is not None else None
    if not torch.isfinite(h).all() or (f is not None and not torch.isfinite(f).all()):
        raise StateCacheError("hidden states overflow float16; this model's states cannot be cached as float16")
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    tensors = {"h": h, "ids": torch.tensor([t for s in seqs for t in s], dtype=torch.int32),
               "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)]),
               "prompt_len": torch.tensor(prompt_lens, dtype=torch.long)}
    if f is not None:
        tensors["f"] = f
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
    """All shards of DIR in memory: `h` [sum of states, H] float16 and the sequences indexing it; with
    feature layers (`feature_layers`, else []) also `f` [sum of states, layers * H] float16 (else None)."""

    def __init__(self, path, expect_n: int | None = None, adapter=None):
        self.path = Path(path).expanduser()
        mf = self.path / "meta.json"
        if not mf.exists():
            raise StateCacheError(f"{self.path} is not a states directory (no meta.json)")
        self.meta = json.loads(mf.read_text())
        self.feature_layers = [int(i) for i in self.meta.get("feature_layers", [])]
        if adapter is not None and _meta(adapter)["stamp"] != self.meta.get("stamp"):
            raise StateCacheError(f"{self.path} holds states of {self.meta.get('backbone')}, not of {adapter.source}; "
                                  "rebuild them (delete the directory)")
        hs, fs, self.seqs, row, nxt = [], [], [], 0, 0
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
            if self.feature_layers and t.get("f") is None:
                raise StateCacheError(f"{f}: no feature states although meta.json lists feature layers "
                                      "(corrupt shard)")
            hs.append(t["h"])
            if self.feature_layers:
                fs.append(t["f"])
            nxt += len(pl)
        if expect_n is not None and nxt < expect_n:
            raise StateCacheError(f"{self.path} holds states for {nxt} of {expect_n} examples; rerun the command "
                                  "that writes it (it resumes)")
        H = int(self.meta.get("hidden_size", 0))
        self.h = torch.cat(hs, 0) if hs else torch.zeros(0, H, dtype=torch.float16)
        self.f = None
        if self.feature_layers:
            self.f = torch.cat(fs, 0) if fs else torch.zeros(0, len(self.feature_layers) * H, dtype=torch.float16)

    def __len__(self) -> int:
        return len(self.seqs)


def compute_states(adapter, examples: list[list[int]], prompt_lens: list[int], path, batch_size: int = 8,
                   progress=None, feature_layers=()) -> Path:
    """Writes the states of `examples` (full token sequences) to `path` with full forwards; resumable."""
    layers = check_feature_layers(adapter, feature_layers)
    path = Path(path).expanduser()
    done = 0  # examples covered by the leading run of complete shards
    if (path / "meta.json").exists():
        for f in sorted(path.glob("shard-*.safetensors"), key=_shard_start):
            if _shard_start(f) != done:
                break
            with safe_open(str(f), "pt") as st:
                done += int(st.metadata()["n"])
    prepare_states_dir(path, adapter, done, layers)
    body, _ = _split_model(adapter.model)
    if progress:
        progress(done, len(examples))
    with torch.no_grad():
        for i in range(done, len(examples), batch_size):
            batch = examples[i:i + batch_size]
            ids, valid = left_pad(batch, adapter.pad_id, adapter.device)
            o = body(input_ids=ids, attention_mask=valid.long(), position_ids=position_ids(valid),
                     output_hidden_states=bool(layers))
            P = ids.shape[1]

            def rows(t):
                return [t[b, P - len(s):P - 1].to(torch.float16).cpu() for b, s in enumerate(batch)]
            feats = rows(feature_states(o, layers)) if layers else None
            write_shard(path, i, batch, prompt_lens[i:i + batch_size], rows(o.last_hidden_state), feats)
            if progress:
                progress(i + len(batch), len(examples))
    return path


def feature_states(output, layers) -> torch.Tensor:
    """[B, T, len(layers) * H]: the hidden states `layers` of a forward run with ``output_hidden_states``."""
    return torch.cat([output.hidden_states[i] for i in layers], -1)
