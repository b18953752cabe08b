"""Learn2PD oracle labels ("extremely greedy parallel" decoding) and their arrow dataset.

For each prompt: (1) the reference = LLaDA's vanilla sampler, one token per step, T=0;
(2) a second decode that, at every step, records for the current block the confidence vector
(softmax probability of the argmax at every block position, decoded ones included) and the
label vector (the step's prediction == reference token; positions already decoded keep their
token and so are labelled true), then unmasks exactly the labelled-true masked positions. When
no masked position is labelled true the reference is copied into the whole block (docs/recipes/learn2pd.md).

The reference past its first end token is taken as end tokens (only the output up to the end
matters). Rows are decoded together; a row that finished its block is not forwarded, so the
per-row NFE of the greedy pass is exact. As a bench method (`oracle`), the reported NFE counts the
greedy pass only: the reference pass it needs is the baseline's cost, not the oracle's.

Storage: one `datasets.Dataset.save_to_disk` shard per batch of prompts (written to a temp name,
then renamed), plus `oracle_meta.json` (teacher, block/gen length, prompt source). A killed run
resumes at the first missing shard; a directory made with other settings is refused.
"""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import torch

from accel.core.files import atomic_dir, write_atomic
from accel.core.progress import phase_bar
from accel.data.prompts import encode_prompt, load_prompts as _load
from accel.decoding.cache import BlockCache
from accel.decoding.dllm import end_free_rows, finish, generate_threshold, generate_vanilla, init_canvas
from accel.models.masks import position_ids
from accel.models.weights import weights_stamp
from accel.trainers.config import ConfigError
from accel.trainers.preempt import stop_guard

META = "oracle_meta.json"
FORMAT = 1


# ---------------------------------------------------------------- prompts
def load_prompts(source: str = "suite", tasks: str | list[str] = "all", n: int = 40, seed: int = 0) -> list[dict]:
    """[{"prompt", "task"}]: n per task from the suite, or the first n (0 = all) of a file (`accel.data.prompts`)."""
    return [{"prompt": r["prompt"], "task": r["task"]} for r in _load(source, tasks, n, seed)]


# ---------------------------------------------------------------- decoding
CACHES = ("auto", "none", "prefix", "dual")
"""The `cache` setting of the oracle decodes and τ calibration."""


def resolve_cache(adapter, setting: str = "auto") -> str | None:
    """The KV cache mode the oracle and calibration decode with (None: uncached, exact).

    auto: the dual cache on a published dLLM whose cached forward runs (LLaDA, Dream), where every
    uncached step costs a forward of the whole canvas and, with a 126K-152K vocabulary, its full
    logits; the built-in teachers decode uncached (seconds, and the README's tables are that exact
    decode)."""
    if setting not in CACHES:
        raise ConfigError(f"cache={setting!r}: choose one of {', '.join(CACHES)}")
    if setting == "auto":
        return "dual" if adapter.supports_cache and adapter.family != "builtin" else None
    return None if setting == "none" else setting


def reference_canvas(adapter, prompts: list[list[int]], gen_len: int, block_len: int = 32,
                     cache: str | None = None):
    """[B, gen_len] reference tokens (one token per step, T=0), end tokens after the end.

    cache None: LLaDA's vanilla sampler exactly (`generate_vanilla`), stopping once every row has
    ended (`stop_when_ended=True`: same tokens, far fewer forwards on short answers). cache
    'prefix' / 'dual': the same schedule (the most confident masked position of the block per
    step) on the shared block loop with that KV cache (`generate_threshold` with a threshold no
    confidence reaches), each row stopping at its end: Fast-dLLM's approximation of it, whose
    forwards feed and score the block only."""
    if cache is None:
        res = generate_vanilla(adapter, prompts, gen_len=gen_len, block_len=block_len, steps=gen_len,
                               stop_when_ended=True)
    else:
        res = generate_threshold(adapter, prompts, gen_len=gen_len, block_len=block_len, threshold=2.0,
                                 cache=cache, early_exit=True)
    end = adapter.eos_ids[0]
    ref = torch.full((len(prompts), gen_len), end, dtype=torch.long)
    for i, row in enumerate(res.tokens):
        ref[i, :len(row)] = torch.tensor(row[:gen_len], dtype=torch.long)
    return ref.to(adapter.device), res


def oracle_decode(adapter, prompts: list[list[int]], gen_len: int, block_len: int = 32, reference=None,
                  record=None, early_exit: bool = False, cache: str | None = None):
    """The extremely-greedy-parallel decode; returns a DecodeResult (nfe = greedy pass only).

    early_exit: a row ends once its canvas holds an end token with nothing pending before it
    (the rule Fast-dLLM's and Learn2PD+EoTP's rows are counted with, so the bench compares
    like with like); oracle *data* keeps every step (the filter also learns the padding).

    record(rows, block, step, conf[b, blk], label[b, blk], masked[b, blk]) is called per step with
    the batch indices of the rows forwarded (CPU tensors).

    cache None: every step is a full forward; 'prefix' / 'dual': the block loop's KV cache
    (`accel.decoding.cache.BlockCache`: the block's first step fills it, later steps feed the
    block, or the block and what follows). Either way only the block's logits are scored.
    """
    if gen_len % block_len:
        raise ValueError(f"gen_len ({gen_len}) must be a multiple of block_len ({block_len})")
    if reference is None:
        reference, _ = reference_canvas(adapter, prompts, gen_len, block_len, cache=cache)
    with torch.no_grad():
        x, valid, P = init_canvas(adapter, prompts, gen_len)
        pos = position_ids(valid)
        kv = BlockCache(adapter, cache)
        mask_id = adapter.mask_id
        pending = x == mask_id  # tracked apart from the canvas: a reference may contain the mask id itself
        nfe = [0] * len(prompts)
        for b in range(gen_len // block_len):
            s, e = P + b * block_len, P + (b + 1) * block_len
            ref = reference[:, b * block_len:(b + 1) * block_len]
            step = 0
            while True:
                rows = torch.nonzero(pending[:, s:e].any(1)).flatten()
                if rows.numel() == 0:
                    break
                logits = kv.logits(x, valid, pos, s, e, first=step == 0, rows=rows)
                probs = torch.softmax(logits.float(), dim=-1)
                conf, x0 = probs.max(-1)
                blk = x[rows, s:e]
                masked = pending[rows, s:e]
                x0 = torch.where(masked, x0, blk)
                r = ref[rows]
                label = x0 == r
                if record is not None:
                    record(rows.cpu(), b, step, conf.cpu(), label.cpu(), masked.cpu())
                newly = masked & label
                stuck = ~newly.any(1)
                blk = torch.where(newly, r, blk)
                blk[stuck] = r[stuck]
                x[rows, s:e] = blk
                pending[rows, s:e] = masked & ~newly & ~stuck[:, None]
                if early_exit:
                    pending &= ~end_free_rows(x, P, pending, adapter.eos_ids)[1]
                for i in rows.tolist():
                    nfe[i] += 1
                step += 1
    return finish(adapter, x, P, nfe)


# ---------------------------------------------------------------- dataset
def _meta(adapter, gen_len, block_len, source, n_prompts, batch_size, cache=None) -> dict:
    return {"format": FORMAT, "teacher": adapter.source, "weights": weights_stamp(str(adapter.source)),
            "family": adapter.family, "mask_id": adapter.mask_id,
            "shift_logits": adapter.shift_logits, "gen_len": gen_len, "block_len": block_len,
            "prompt_source": source, "n_prompts": n_prompts, "shard_size": batch_size, "cache": cache}


_MATCH = ("format", "teacher", "weights", "gen_len", "block_len", "prompt_source", "n_prompts", "shard_size", "cache")


def generate_oracle_dataset(adapter, prompts: list[dict], out_dir: str | Path, gen_len: int = 64,
                            block_len: int = 32, batch_size: int = 32, source: str = "suite",
                            progress: bool = True, max_shards: int | None = None, cache: str | None = None) -> Path:
    """Writes the oracle dataset to out_dir (resumable); returns out_dir.

    cache: the KV cache of the reference and oracle decodes (None: uncached; `resolve_cache`),
    recorded in the meta (a resumed run must decode the same way). max_shards stops after
    writing that many new shards (used to test resumption).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = _meta(adapter, gen_len, block_len, source, len(prompts), batch_size, cache)
    meta_path = out / META
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        diff = [k for k in _MATCH if old.get(k) != meta.get(k)]
        if diff:
            why = ", ".join(k + (" (the teacher's weights changed since)" if k == "weights" else "") for k in diff)
            raise ConfigError(f"oracle dir {out} was made with different settings ({why}); "
                              "use another oracle_dir or delete it")
        if old.get("complete"):
            return out
    write_atomic(meta_path, json.dumps(dict(meta, complete=False), indent=2))
    n_shards = (len(prompts) + batch_size - 1) // batch_size
    todo = [k for k in range(n_shards) if not (out / _shard(k)).exists()]
    written = 0
    datasets.disable_progress_bars()  # per-shard "Saving the dataset" bars; ours is the one over shards
    with phase_bar("oracle shards", n_shards, progress, done=n_shards - len(todo)) as advance, \
            stop_guard("Learn2PD oracle data") as stop:
        for k in todo:
            stop.check(f"{n_shards - len(todo) + written} of {n_shards} shards in {out}")
            if max_shards is not None and written >= max_shards:
                return out
            chunk = prompts[k * batch_size:(k + 1) * batch_size]
            ds = datasets.Dataset.from_dict(_shard_records(adapter, chunk, k * batch_size, gen_len, block_len, cache),
                                            features=_features())
            with atomic_dir(out / _shard(k)) as tmp:
                ds.save_to_disk(str(tmp))
            written += 1
            advance()
    write_atomic(meta_path, json.dumps(dict(meta, complete=True), indent=2))
    return out


def _shard_records(adapter, chunk: list[dict], offset: int, gen_len: int, block_len: int, cache=None) -> dict:
    cols = {k: [] for k in ("prompt_idx", "task", "block", "step", "conf", "label", "masked")}

    def record(rows, b, step, conf, label, masked):
        for j, r in enumerate(rows.tolist()):
            cols["prompt_idx"].append(offset + r)
            cols["task"].append(chunk[r]["task"])
            cols["block"].append(b)
            cols["step"].append(step)
            cols["conf"].append(conf[j].tolist())
            cols["label"].append(label[j].to(int).tolist())
            cols["masked"].append(masked[j].to(int).tolist())

    ids = [encode_prompt(adapter.tokenizer, c["prompt"]) for c in chunk]
    oracle_decode(adapter, ids, gen_len, block_len, record=record, cache=cache)
    return cols


def _features():
    return datasets.Features({
        "prompt_idx": datasets.Value("int32"), "task": datasets.Value("string"),
        "block": datasets.Value("int32"), "step": datasets.Value("int32"),
        "conf": datasets.Sequence(datasets.Value("float32")),
        "label": datasets.Sequence(datasets.Value("int8")),
        "masked": datasets.Sequence(datasets.Value("int8")),
    })


def load_oracle_dataset(out_dir: str | Path):
    """(dataset of all shards, meta dict); errors if the directory is missing or incomplete."""
    out = Path(out_dir)
    meta_path = out / META
    if not meta_path.exists():
        raise FileNotFoundError(f"{out} holds no oracle data ({META} missing); run `accel data learn2pd-oracle --out {out}`")
    meta = json.loads(meta_path.read_text())
    if not meta.get("complete"):
        raise ConfigError(f"oracle data in {out} is incomplete; re-run `accel data learn2pd-oracle --out {out}` to resume")
    shards = sorted(p for p in out.iterdir() if p.name.startswith("shard_"))
    return datasets.concatenate_datasets([datasets.load_from_disk(str(p)) for p in shards]), meta


def oracle_complete(out_dir: str | Path) -> bool:
    p = Path(out_dir) / META
    return p.exists() and bool(json.loads(p.read_text()).get("complete"))


def _shard(k: int) -> str:
    return f"shard_{k:05d}"
