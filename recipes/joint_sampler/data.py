"""Training data: the frozen dLLM's own one-token-per-forward denoising trajectories.

Each prompt is decoded with the K=1 rule of `decode.py` (one full forward per token, the
base sampler's confidence order, tokens drawn at ``traj_temperature``). At every step the
trajectory records the canvas before the step, the position and token it unmasked, and the
model's log-probabilities over the current block (the [MASK] column removed). A *training
state* is a step t with the following steps t+1..t+K-1 in the same block: pass j of the
sampler (j >= 1) sees the state's hidden states plus the tokens of steps t..t+j-1, and its
target is step t+j's distribution -- the true sequential conditional, computed by a real full
forward of the frozen model on the canvas with those tokens unmasked. No extra forwards are
needed beyond the trajectory itself.

Layout of the data dir::

    joint_data.json        settings, fingerprint, counts, complete
    shard-00000.safetensors ... one per shard_size prompts (the resume unit; atomic writes)

Shard tensors (S states): prompt [S, Pmax] (right-padded) + prompt_len [S]; resp [S, gen_len]
(the state's response canvas); block_start [S]; pos / tok [S, K] (block-relative positions and
tokens of steps t..t+K-1, -1 padded); n_pass [S] (valid sampler passes, 1..K-1); tgt
[S, K-1, block_len, V] float16 log-probs (or tgt_lp + tgt_idx [.., m] with target_topk = m).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file

from accel.core.errors import UserError
from accel.core.files import save_tensors, write_atomic
from accel.decoding.dllm import init_canvas
from accel.models.masks import full_mask, position_ids
from accel.models.weights import weights_stamp
from accel.recipes.joint_sampler.decode import _block_logits, block_forwards, end_rows
from accel.recipes.joint_sampler.kernels import gumbel_noise, sample_step
from accel.recipes.joint_sampler.layer import backbone_forward
from accel.trainers.preempt import stop_guard

META_FILE = "joint_data.json"


class DataError(UserError, ValueError):
    """Bad data settings or a data dir made with other settings; the message says the fix."""


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


@torch.no_grad()
def record_trajectories(adapter, prompts: list[list[int]], gen_len: int, block_len: int, temperature: float,
                        topk: int = 0, generator=None) -> list[list[dict]]:
    """Per prompt, the list of its steps: {resp, block, pos, tok, lp} (block-relative pos, lp [blk, V|m])."""
    x, valid, P = init_canvas(adapter, prompts, gen_len)
    attn, pos = full_mask(valid), position_ids(valid)
    mask_id = adapter.mask_id
    steps: list[list[dict]] = [[] for _ in prompts]
    for b, s, e, rows in block_forwards(x, P, gen_len, block_len, mask_id):
        logits, _ = backbone_forward(adapter, x[rows], attn[rows], pos[rows])
        blk = _block_logits(logits, s, e, mask_id)
        avail = x[rows, s:e] == mask_id
        g = gumbel_noise(blk.shape, generator, blk.device) if temperature > 0 else None
        p, t, _ = sample_step(blk, avail, temperature, g)
        lp = torch.log_softmax(blk, dim=-1)
        if topk:
            vals, idx = lp.topk(min(topk, lp.shape[-1]), dim=-1)
        before = x[rows, P:].clone()
        x[rows, s + p] = t
        for i, r in enumerate(rows.tolist()):
            rec = {"resp": before[i].cpu(), "block": b, "pos": int(p[i]), "tok": int(t[i])}
            if topk:
                rec["lp"], rec["idx"] = vals[i].half().cpu(), idx[i].int().cpu()
            else:
                rec["lp"] = lp[i].half().cpu()
            steps[r].append(rec)
        end_rows(x, P, mask_id, adapter.eos_ids)
    return steps


def _probs_at(rec: dict, pos: int, size: int) -> torch.Tensor:
    """Dense probabilities [size] of a step record at block position `pos` (top-m records: zeros elsewhere)."""
    p = torch.zeros(size, dtype=torch.float32)
    lp = rec["lp"][pos].float()
    if "idx" in rec:
        p[rec["idx"][pos].long()] = lp.exp()
    else:
        p[:lp.shape[0]] = lp.exp()
    return p


def dependence(steps: list[dict], t: int, max_k: int) -> float:
    """How much the tokens of steps t..t+j-1 change step t+j's distribution, max over the window.

    For every later step t+j (j = 1..max_k-1) in the same block: total variation between the true
    conditional at the position that step unmasks (its own forward, which saw steps t..t+j-1)
    and the marginal at that position from step t's forward -- exactly what the sampler's pass j
    must correct. 0 when the window's tokens are independent given the canvas (the marginal
    baseline is already exact there, e.g. settled end-token padding or deterministic copies).
    """
    b, out = steps[t]["block"], 0.0
    size = max(int(st["idx"].max()) + 1 if "idx" in st else st["lp"].shape[-1] for st in steps[t:t + max_k])
    for st in steps[t + 1:t + max_k]:
        if st["block"] != b:
            break
        p, q = _probs_at(st, st["pos"], size), _probs_at(steps[t], st["pos"], size)
        out = max(out, 0.5 * float((p - q).abs().sum()))
    return out


def select_states(steps: list[dict], max_k: int, n: int, gen: torch.Generator, n_plain: int | None = None,
                  threshold: float = 0.0) -> list[int]:
    """Training states of one trajectory: step indices t whose next step is in the same block.

    Dependence-first selection (the fix of issue 8): a trajectory of the built-in tasks is mostly
    settled end-token padding, where the K-step joint equals the marginals; sampled uniformly,
    ~5% of the states carried any dependence between a step's tokens (the passes' whole job), so
    the layer learnt the end-token order but stayed at the marginal on the answer digits. Here
    up to `n` steps whose window has ``dependence > threshold`` are kept (random among them),
    plus up to `n_plain` of the others (random; they teach the layer to stay the identity and
    keep the base confidence order where nothing depends). ``n_plain=None``: uniform selection
    of up to n states regardless of dependence (the old rule).
    """
    ok = [t for t in range(len(steps) - 1) if steps[t + 1]["block"] == steps[t]["block"]]

    def pick(cands, m):
        if len(cands) <= m:
            return list(cands)
        return [cands[i] for i in torch.randperm(len(cands), generator=gen)[:m].tolist()]

    if n_plain is None:
        return sorted(pick(ok, n))
    dep = [t for t in ok if dependence(steps, t, max_k) > threshold]
    dset = set(dep)
    plain = [t for t in ok if t not in dset]
    return sorted(pick(dep, n) + pick(plain, n_plain))


def build_states(prompt: list[int], steps: list[dict], ts: list[int], max_k: int, block_len: int) -> list[dict]:
    """Training states (tensors of one state each) for the selected steps of one trajectory."""
    out = []
    J = max_k - 1
    for t in ts:
        run = [st for st in steps[t:t + max_k]]
        run = [st for st in run if st["block"] == steps[t]["block"]]
        n_pass = len(run) - 1
        pos = torch.full((max_k,), -1, dtype=torch.int32)
        tok = torch.full((max_k,), -1, dtype=torch.int32)
        for i, st in enumerate(run):
            pos[i], tok[i] = st["pos"], st["tok"]
        lp0 = run[0]["lp"]
        tgt = torch.zeros((J,) + tuple(lp0.shape), dtype=torch.float16)
        for j in range(1, len(run)):
            tgt[j - 1] = run[j]["lp"]
        st = {"prompt": torch.tensor(prompt, dtype=torch.int32), "resp": steps[t]["resp"].int(),
              "block_start": torch.tensor(steps[t]["block"] * block_len, dtype=torch.int32),
              "pos": pos, "tok": tok, "n_pass": torch.tensor(n_pass, dtype=torch.int32), "tgt": tgt}
        if "idx" in run[0]:
            idx = torch.zeros((J,) + tuple(lp0.shape), dtype=torch.int32)
            for j in range(1, len(run)):
                idx[j - 1] = run[j]["idx"]
            st["tgt_idx"] = idx
        out.append(st)
    return out


def _stack(states: list[dict]) -> dict:
    Pm = max(len(s["prompt"]) for s in states)
    prompt = torch.zeros((len(states), Pm), dtype=torch.int32)
    for i, s in enumerate(states):
        prompt[i, :len(s["prompt"])] = s["prompt"]
    out = {"prompt": prompt, "prompt_len": torch.tensor([len(s["prompt"]) for s in states], dtype=torch.int32)}
    for key in states[0]:
        if key != "prompt":
            out[key] = torch.stack([s[key] for s in states]).contiguous()
    return out


def _unstack(t: dict) -> list[dict]:
    n = t["resp"].shape[0]
    out = []
    for i in range(n):
        s = {k: v[i] for k, v in t.items() if k not in ("prompt", "prompt_len")}
        s["prompt"] = t["prompt"][i, :int(t["prompt_len"][i])]
        out.append(s)
    return out


def generate_data(adapter, prompts: list[list[int]], out_dir, *, gen_len: int, block_len: int, max_k: int,
                  states_per_prompt: int, temperature: float, topk: int = 0, batch_size: int = 32,
                  shard_size: int = 64, seed: int = 0, teacher: str = "", progress: bool = True,
                  plain_states_per_prompt: int | None = None, dependence_threshold: float = 0.05) -> Path:
    """Writes (or resumes) the data dir for `prompts` (token ids); returns it.

    States per trajectory: `select_states` (dependence-first with ``plain_states_per_prompt``
    set; uniform when it is None)."""
    if adapter.kind != "dllm" or adapter.mask_id is None:
        raise DataError(f"backbone {adapter.source} is not a diffusion LM; the joint sampler needs a dLLM")
    out = Path(out_dir).expanduser()
    settings = {"teacher": teacher or str(adapter.source), "weights": weights_stamp(str(adapter.source)),
                "gen_len": gen_len, "block_len": block_len,
                "max_k": max_k, "states_per_prompt": states_per_prompt, "temperature": temperature, "topk": topk,
                "shard_size": shard_size, "seed": seed, "sampler": "sequential-k1",
                "select": ("uniform" if plain_states_per_prompt is None else
                           {"plain": plain_states_per_prompt, "threshold": dependence_threshold})}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for p in prompts:
        h.update(json.dumps(p).encode())
    fp = h.hexdigest()[:16]
    meta_file = out / META_FILE
    if meta_file.exists():
        old = json.loads(meta_file.read_text())
        if old.get("fingerprint") != fp:
            raise DataError(f"{out} holds joint-sampler data made with other settings or prompts; remove it or "
                            "set data_dir to another directory")
        if old.get("complete"):
            return out
    out.mkdir(parents=True, exist_ok=True)
    n_shards = -(-len(prompts) // shard_size)
    meta = {**settings, "fingerprint": fp, "n_prompts": len(prompts), "n_shards": n_shards, "complete": False}
    write_atomic(meta_file, json.dumps(meta, indent=1))
    with stop_guard("joint-sampler trajectory data") as stop:
        bar = _bar(len(prompts), progress)
        n_states = 0
        try:
            for si in range(n_shards):
                part = prompts[si * shard_size:(si + 1) * shard_size]
                f = out / shard_name(si)
                kept = f"{si} of {n_shards} shards in {out}"
                if f.exists():
                    n_states += int(json.loads((out / (f.name + ".json")).read_text())["n_states"])
                    bar(len(part))
                    continue
                gen = torch.Generator().manual_seed(seed * 100003 + si)
                dev_gen = torch.Generator(device=adapter.device).manual_seed(seed * 100003 + si)
                states = []
                for bi in range(0, len(part), batch_size):
                    stop.check(kept)
                    batch = part[bi:bi + batch_size]
                    trajs = record_trajectories(adapter, batch, gen_len, block_len, temperature, topk, dev_gen)
                    for p, steps in zip(batch, trajs):
                        states += build_states(p, steps, select_states(steps, max_k, states_per_prompt, gen,
                                                                           plain_states_per_prompt, dependence_threshold),
                                               max_k, block_len)
                    bar(len(batch))
                if not states:
                    continue
                tmp = f.with_name(f.name + ".tmp")
                save_tensors(_stack(states), tmp)
                write_atomic(out / (f.name + ".json"), json.dumps({"n_states": len(states)}))
                tmp.rename(f)
                n_states += len(states)
        finally:
            bar(None)
    if n_states == 0:
        raise DataError("no training states: every trajectory ended after one step; use longer answers or more prompts")
    meta.update(complete=True, n_states=n_states)
    write_atomic(meta_file, json.dumps(meta, indent=1))
    return out


def load_data(path) -> tuple[list[dict], dict]:
    """(list of training states, metadata) of a complete data dir."""
    p = Path(path).expanduser()
    if not (p / META_FILE).exists():
        raise DataError(f"{p} is not a joint-sampler data dir (no {META_FILE}); `accel train joint-sampler` makes one")
    meta = json.loads((p / META_FILE).read_text())
    if not meta.get("complete"):
        raise DataError(f"{p} is incomplete; re-run `accel train joint-sampler` with the same settings to resume")
    states = []
    for i in range(meta["n_shards"]):
        f = p / shard_name(i)
        if f.exists():
            states += _unstack(load_file(str(f)))
    return states, meta


def _bar(total: int, enabled: bool):
    """A rich progress bar over prompts; call with n to advance, None to close."""
    if not enabled:
        return lambda n: None
    prog = Progress(TextColumn("[bold]trajectories"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    prog.start()
    task = prog.add_task("traj", total=total)

    def step(n):
        if n is None:
            prog.stop()
        else:
            prog.advance(task, n)
    return step
