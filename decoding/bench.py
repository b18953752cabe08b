"""The bench harness: the same prompts decoded by every method in one process, side by side.

It runs, times and scores (`run_bench`); `accel.decoding.report` turns the result into a table,
JSON or a plot. Numbers (docs/architecture.md, "Measuring"): accuracy (the task suite's
exact-match/validity score) next to NFE (full-model forwards per prompt), tokens per forward,
tokens/s and the tokens/s ratio to the first method of the same run (the baseline), tokens per
forward over the answer (forwards counted only until the answer held no mask) and, with
``sweep``, AUP over each method's knob (`accel.decoding.report.aup`). Tokens are
counted identically for every method — generated ids up to and including the first end token —
so a method cannot look fast by emitting padding after its answer. Each method is warmed up once
on a tiny batch before timing.

A `Target` is a loaded model with its `DecodeMethod`s. Plain models (``builtin:dllm``,
``builtin:ar``, an HF directory) load here; an accel checkpoint's methods come from its recipe,
so checkpoints are loaded by `accel.recipes.targets.load_target` (above this layer).

No torch at import time: the CLI imports this module for its cheap checks.
"""
from __future__ import annotations

import platform
import time
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from accel.core.errors import UserError
from accel.data.long_tasks import LONG_BLOCK_LEN, LONG_GEN_LEN
from accel.data.prompts import encode_prompt  # noqa: F401 (re-exported for callers of bench.encode_prompt)
from accel.decoding.report import (add_aup, check_output_path, check_plot_path,  # noqa: F401 (re-exported)
                                   plot_report, report_tables, write_json)

DEFAULT_LIMIT = 32
DEFAULT_BATCH_SIZE = 32
DEFAULT_BLOCK_LEN = 32
BUILTIN_GEN_LEN = 64
"""Built-in world answers are <= 20 tokens; 64 leaves room and stays fast."""
MODEL_GEN_LEN = 256
"""Real backbones (LLaDA, Dream, Llama...) write longer answers: the papers' setting."""


class BenchError(UserError, ValueError):
    """Bad bench input (target, method, lengths, output path); the message says the fix."""


@dataclass
class Target:
    """A loaded TARGET: its backbone adapter and the methods it offers."""
    spec: str
    adapter: object
    default_methods: list[str]
    recipe_methods: dict[str, Callable] = field(default_factory=dict)
    """{name: DecodeMethod} a checkpoint's recipe provides (empty for plain models)."""
    checkpoint: object = None
    decode_defaults: dict = field(default_factory=dict)
    """A checkpoint's decode defaults (method, gen_len, block_len) from its recipe's spec."""
    default_batch_size: int = 0
    """The recipe's bench batch size when --batch-size is not given (0: DEFAULT_BATCH_SIZE)."""

    @property
    def kind(self) -> str:
        return self.adapter.kind


def check_target(spec: str) -> str:
    """Cheap validation before any model is loaded: 'dllm', 'ar' or 'checkpoint'."""
    from accel.models.backbone import BUILTIN, BUILTIN_KIND, BackboneError, detect_family
    if spec.startswith("builtin:"):
        if spec not in BUILTIN:
            raise BackboneError(f"unknown built-in model {spec!r}; choose {', '.join(BUILTIN)}")
        return BUILTIN_KIND[spec.split(":", 1)[1]]
    from accel.core.model_dir import read_config
    _, cfg_file, cfg = read_config(
        spec, BackboneError,
        absent="model directory {p} does not exist; pass builtin:dllm, builtin:ar, a local HF model directory or "
               "an exported accel checkpoint",
        not_dir="{p} is a file, not a model directory; pass the directory holding config.json",
        missing="{p} is not a model directory: no config.json in it (expected an HF model saved with "
                "save_pretrained, or an accel checkpoint)",
        invalid="{f} is not valid JSON: {e}")
    if not isinstance(cfg, dict):
        raise BackboneError(f"{cfg_file} is not a model config (expected a JSON object)")
    return "checkpoint" if "accel" in cfg else detect_family(cfg)[1]


def load_model_target(spec: str, trust_remote_code: bool = False, device: str | None = None,
                      dtype: str | None = None) -> Target:
    """A plain model TARGET (built-in or HF directory) with its kind's baseline methods."""
    from accel.decoding.methods import DEFAULT_METHODS
    from accel.models.backbone import load_backbone

    if check_target(spec) == "checkpoint":
        raise BenchError(f"{spec} is an accel checkpoint: its methods come from its recipe; "
                         "load it with accel.recipes.targets.load_target")
    adapter = load_backbone(spec, trust_remote_code=trust_remote_code, device=device or default_device(), dtype=dtype)
    defaults = [m for m in DEFAULT_METHODS[adapter.kind] if adapter.supports_cache or not method_uses_cache(m, adapter)]
    # a model whose code ignores attention masks cannot batch padded prompts (`init_canvas`)
    one = 1 if adapter.extra.get("block_causal") is False else 0
    return Target(spec=spec, adapter=adapter, default_methods=defaults, default_batch_size=one)


def method_uses_cache(name: str, adapter, recipe_methods: dict | None = None) -> bool:
    from accel.decoding.methods import get_method, uses_cache
    if recipe_methods and name in recipe_methods:
        return uses_cache(recipe_methods[name])
    return get_method(name, adapter.kind).uses_cache


def check_cache_support(target: Target, methods: dict[str, Callable]) -> None:
    """A backbone whose code has no KV cache (LLaDA's) cannot run cached methods: one line naming
    the methods that do run."""
    from accel.decoding.methods import MethodError, available, uses_cache
    if getattr(target.adapter, "supports_cache", True):
        return
    bad = [n for n, fn in methods.items() if uses_cache(fn)]
    if bad:
        names = list(target.recipe_methods) + [m for m in available(target.kind) if m not in target.recipe_methods]
        ok = [n for n in names if not method_uses_cache(n, target.adapter, target.recipe_methods)]
        raise MethodError(f"{bad[0]} decodes with a KV cache, which the model code of {target.spec} "
                          f"({target.adapter.family}) does not support; methods that run: {', '.join(ok)}")


def select_methods(target: Target, names: list[str] | None = None, options: dict | None = None,
                   block_len: int | None = None) -> dict[str, Callable]:
    """{name: DecodeMethod} for `names` (default: the target's defaults), recipe methods first.

    `options` go to every baseline method that declares the key (an option no selected method
    declares is an error); `block_len` overrides the block of every dLLM baseline method (default:
    the long world's block on a long-world teacher, else each method's own).
    """
    from accel.decoding.methods import MethodError, available, get_method
    from accel.models.backbone import adapter_world

    if block_len is None and adapter_world(target.adapter) == "long":
        block_len = LONG_BLOCK_LEN

    names = list(dict.fromkeys(names or target.default_methods))
    options = dict(options or {})
    if block_len is not None and target.kind == "dllm":
        options["block_len"] = block_len
    out, used = {}, set()
    for name in names:
        if name in target.recipe_methods:
            m = target.recipe_methods[name]
            out[name] = m if m.name == name else dataclasses.replace(m, name=name)
            continue
        if name not in available(target.kind):
            valid = list(target.recipe_methods) + [m for m in available(target.kind) if m not in target.recipe_methods]
            other = "ar" if target.kind == "dllm" else "dllm"
            hint = f" ({name!r} is a method for {other} models)" if name in available(other) else ""
            raise MethodError(f"unknown method {name!r} for {target.spec}{hint}; choose from: {', '.join(valid)}")
        declared = get_method(name, target.kind).options
        mine = {k: v for k, v in options.items() if k in declared}
        used |= set(mine)
        out[name] = get_method(name, target.kind, mine)
    stray = set(options) - used - {"block_len"}
    if stray:
        raise MethodError(f"--opt {sorted(stray)[0]}: no selected method has this option "
                          f"(methods: {', '.join(names)})")
    check_cache_support(target, out)
    return out


def check_gen_len(gen_len: int, methods: dict[str, Callable]):
    """Every block-based method needs gen_len to be a multiple of its block length."""
    if gen_len < 1:
        raise BenchError(f"--gen-len must be >= 1 (got {gen_len})")
    for name, fn in methods.items():
        b = getattr(fn, "block_len", None)
        if b and gen_len % b:
            raise BenchError(f"--gen-len {gen_len} is not a multiple of the block length {b} (method {name}); "
                             f"use --gen-len {max(b, gen_len // b * b)} or a --block-len that divides {gen_len}")


def default_tasks(adapter) -> list[str]:
    """The long suite for a long-world teacher, else the short suite ('all')."""
    from accel.models.backbone import adapter_world
    return ["long"] if adapter_world(adapter) == "long" else ["all"]


def default_gen_len(adapter) -> int:
    """64 for models speaking the built-in world's tokenizer, the long world's canvas (128) on its teachers,
    256 for real backbones."""
    from accel.data.tokenizer import VOCAB
    from accel.models.backbone import adapter_world
    if adapter_world(adapter) == "long":
        return LONG_GEN_LEN
    try:
        builtin = len(adapter.tokenizer) == len(VOCAB) and set(VOCAB) <= set(adapter.tokenizer.get_vocab())
    except (AttributeError, TypeError):
        builtin = False
    return BUILTIN_GEN_LEN if builtin or str(adapter.source).startswith("builtin:") else MODEL_GEN_LEN


def checkpoint_gen_len(target: Target) -> int | None:
    """The generation length a checkpoint was exported with (`accel decode` and `accel bench` share it)."""
    if target.checkpoint is None:
        return None
    g = target.decode_defaults.get("gen_len")
    return int(g) if g else None


def default_limit(gen_len: int, adapter) -> int:
    """Prompts per task when --limit is not given: fewer for long generations on a CPU.

    One-token-per-step baselines cost gen_len full forwards per prompt, so a CPU run at gen 256
    with the usual 32 prompts per task would take the better part of an hour.
    """
    on_cpu = str(getattr(adapter, "device", "cpu")).startswith("cpu")
    return DEFAULT_LIMIT if not on_cpu or gen_len <= BUILTIN_GEN_LEN else max(4, DEFAULT_LIMIT * BUILTIN_GEN_LEN // gen_len)


def default_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def count_tokens(row: list[int], eos_ids) -> int:
    """Generated ids up to and including the first end token: the same count for every method."""
    for i, t in enumerate(row):
        if t in eos_ids:
            return i + 1
    return len(row)


def _sync(adapter):
    import torch
    if torch.cuda.is_available() and str(adapter.device).startswith("cuda"):
        torch.cuda.synchronize()


def _texts(adapter, res) -> list[str]:
    if len(res.texts) == len(res.tokens):
        return res.texts
    drop = set(adapter.eos_ids) | {adapter.mask_id}
    return [adapter.tokenizer.decode([t for t in r if t not in drop]) for r in res.tokens]


def run_bench(target, methods: list[str] | None = None, tasks: list[str] | None = None,
              limit: int | None = None, gen_len: int | None = None, batch_size: int | None = None,
              progress: Callable[[int, int, str], None] | None = None, *, block_len: int | None = None,
              options: dict | None = None, compare: list[str] | tuple = (), trust_remote_code: bool = False,
              device: str | None = None, prompt_sets: dict[str, list[dict]] | None = None,
              sweep: bool = False, prompts: str | None = None) -> dict:
    """Decodes `limit` test prompts per task with every method; returns the report dict.

    target: a loaded `Target` (or a plain model TARGET string). compare: more targets whose default methods
    join the run as extra rows (renamed ``<target>/<method>`` only on a name clash).
    progress(done, total, description) is called as prompts finish.
    prompt_sets: {name: examples} decoded instead of the suite's test split (the hook for other prompt
    sources): each example is a dict with a "prompt", scored by `accel.data.tasks.score`; each name
    becomes a task column of the report. sweep: also decode every method that declares a knob at each
    of its sweep values (rows ``name@knob=value``), for the AUP curve. prompts: a real prompt set
    (`accel.decoding.prompt_sets`: mtbench, sharegpt, a .jsonl) instead of the task suite, AR targets
    only; its categories are the rows' tasks and the quality score is ``identical_to_greedy``.
    """
    from accel.data.tasks import resolve_tasks, score, test_split

    if limit is not None and limit < 1:
        raise BenchError(f"--limit must be >= 1 (got {limit})")
    if batch_size is not None and batch_size < 1:
        raise BenchError(f"--batch-size must be >= 1 (got {batch_size})")
    if tasks and not (prompt_sets or prompts):
        resolve_tasks(tasks)  # a typo fails before the model loads
    main = target if isinstance(target, Target) else load_model_target(target, trust_remote_code, device)
    if prompts:
        from accel.decoding.prompt_sets import load_prompt_set
        if main.kind != "ar":
            raise BenchError(f"--prompts {prompts}: real prompt sets are scored against greedy decoding, which "
                             f"needs an AR target ({main.spec} is a {main.kind}); drop --prompts")
        prompt_sets = load_prompt_set(prompts, limit)
    task_names = list(prompt_sets) if prompt_sets else resolve_tasks(tasks or default_tasks(main.adapter))
    batch_size = batch_size or main.default_batch_size or DEFAULT_BATCH_SIZE
    gen_len = gen_len or checkpoint_gen_len(main) or default_gen_len(main.adapter)
    if prompts:
        from accel.decoding.prompt_sets import answer_first_turns
        if progress:
            progress(0, 1, "first turns: the target's greedy answers")
        answer_first_turns(main.adapter, prompt_sets, gen_len, batch_size)  # mtbench-turn2 only
    if limit is None and not prompts:
        limit = default_limit(gen_len, main.adapter)
    runs = [(n, fn, main) for n, fn in select_methods(main, methods, options, block_len).items()]
    for spec in compare:
        other = spec if isinstance(spec, Target) else load_model_target(spec, trust_remote_code, device)
        taken = {r[0]: r for r in runs}
        for n, fn in select_methods(other, None, None, block_len).items():
            if n in taken and _same_run(taken[n], fn, other):
                continue  # e.g. two checkpoints of one base: their greedy rows would be the same decode twice
            runs.append((f"{other.spec}/{n}" if n in taken else n, fn, other))
    if sweep:
        runs = sweep_runs(runs)
    for _, fn, _t in runs:
        check_gen_len(gen_len, {_: fn})

    examples = dict(prompt_sets) if prompt_sets else {t: test_split(t, limit) for t in task_names}
    outputs: dict = {}  # (method, task) -> generated rows (prompt sets: compared with greedy afterwards)
    encoded: dict[int, dict[str, list[list[int]]]] = {}
    total = len(runs) * sum(len(v) for v in examples.values())
    done = 0
    stats = {}  # (method, task) -> [correct, n, nfe, tokens, seconds]
    metric_sums = {}  # (method, task) -> {metric: [sum, count]} (recipe row metrics, e.g. tv)
    for name, fn, tgt in runs:
        a = tgt.adapter
        enc = encoded.setdefault(id(a.tokenizer), {t: [encode_prompt(a.tokenizer, e["prompt"]) for e in exs]
                                                   for t, exs in examples.items()})
        if progress:
            progress(done, total, f"{name}: warm-up")
        fn(a, enc[task_names[0]][:min(2, batch_size)], gen_len)
        for task in task_names:
            exs, task_prompts = examples[task], enc[task]
            s = stats.setdefault((name, task), [0, 0, 0, 0, 0.0, 0])
            for i in range(0, len(exs), batch_size):
                batch = task_prompts[i:i + batch_size]
                _sync(a)
                t0 = time.perf_counter()
                res = fn(a, batch, gen_len)
                _sync(a)
                s[4] += time.perf_counter() - t0
                if len(res.tokens) != len(batch) or len(res.nfe) != len(batch):
                    raise RuntimeError(f"method {name} returned {len(res.tokens)} rows / {len(res.nfe)} NFE "
                                       f"for {len(batch)} prompts")
                _add_row_metrics(metric_sums, name, task, res, fn, a, batch, gen_len)
                if prompts:
                    outputs.setdefault((name, task), []).extend(res.tokens)
                else:
                    for ex, text in zip(exs[i:i + batch_size], _texts(a, res)):
                        s[0] += bool(score(ex, text))
                s[1] += len(batch)
                s[2] += sum(int(n) for n in res.nfe)
                s[3] += sum(count_tokens(r, a.eos_ids) for r in res.tokens)
                s[5] += sum(int(n) for n in ((res.extra or {}).get("answer_nfe") or res.nfe))
                done += len(batch)
                if progress:
                    progress(done, total, f"{name}: {task}")

    if prompts:
        _score_against_greedy(runs, task_names, encoded, outputs, stats, gen_len, batch_size, progress)
    rows = _rows([r[0] for r in runs], task_names, stats, metric_sums,
                 untimed={n for n, fn, _t in runs if not getattr(fn, "timed", True)})
    quality = "accuracy"
    if prompts:
        from accel.decoding.prompt_sets import QUALITY as quality
        for r in rows:
            r[quality] = r["accuracy"]
    report = {
        "prompts": prompts, "quality": quality,
        "target": main.spec, "compare": [c.spec if isinstance(c, Target) else c for c in compare],
        "kind": main.kind, "gen_len": gen_len, "block_len": block_len, "limit": limit, "batch_size": batch_size,
        "tasks": task_names,
        "methods": [{"name": n, "target": t.spec, "kind": t.kind,
                     "help": method_help(fn), "timed": getattr(fn, "timed", True), **_knob_info(n, fn)}
                    for n, fn, t in runs],
        "sweep": bool(sweep),
        "device": _device_name(main.adapter), "dtype": _dtype_name(main.adapter), "versions": _versions(),
        "rows": rows,
    }
    add_aup(report)
    return report


def _score_against_greedy(runs, task_names, encoded, outputs, stats, gen_len, batch_size, progress):
    """stats[..][0] = prompts identical to greedy decoding of the method's own target (reference decoded
    untimed, unless that target's greedy row already ran)."""
    from accel.decoding.methods import get_method
    from accel.decoding.prompt_sets import identical_count
    refs = {}
    for name, fn, tgt in runs:
        if name == "greedy" or name.endswith("/greedy"):
            refs.setdefault(id(tgt), {t: outputs[(name, t)] for t in task_names})
    for name, fn, tgt in runs:
        a = tgt.adapter
        if id(tgt) not in refs:
            greedy = get_method("greedy", "ar")
            ref = {}
            for t in task_names:
                ps = encoded[id(a.tokenizer)][t]
                ref[t] = []
                for i in range(0, len(ps), batch_size):
                    ref[t].extend(greedy(a, ps[i:i + batch_size], gen_len).tokens)
                if progress:
                    progress(0, 0, f"greedy reference: {t}")
            refs[id(tgt)] = ref
        for t in task_names:
            stats[(name, t)][0] = identical_count(outputs[(name, t)], refs[id(tgt)][t], a.eos_ids, gen_len)


def _same_run(run: tuple, fn, target) -> bool:
    """Whether `fn` on `target` decodes exactly as the run (name, fn, target) already listed: the same
    method function and options, no model of its own, on a backbone loaded from the same source."""
    _name, have, have_target = run

    def key(m):
        return getattr(m, "run", None), getattr(m, "options", None), getattr(m, "model", None)
    return (key(fn)[0] is not None and key(fn)[2] is None and key(fn) == key(have)
            and str(target.adapter.source) == str(have_target.adapter.source))


def sweep_runs(runs: list[tuple]) -> list[tuple]:
    """Each (name, method, target) followed by one run per value of the method's sweep (its own
    default value is not repeated: that point is the method's row)."""
    out = []
    for name, fn, tgt in runs:
        out.append((name, fn, tgt))
        knob = getattr(fn, "knob", None)
        for v in getattr(fn, "sweep", ()) if knob else ():
            if v != fn.options.get(knob):
                point = fn.at(v)
                out.append((f"{name}@{knob}={v:g}", point, tgt))
    return out


def _knob_info(name: str, fn) -> dict:
    """The method entry's knob fields: which method a sweep point belongs to and its knob value."""
    knob = getattr(fn, "knob", None)
    if not knob:
        return {}
    base = name.split("@", 1)[0]
    return {"sweep_of": base, "knob": knob, "value": fn.options.get(knob)}


def method_help(fn) -> str:
    """A MethodFn's one-line help: its `help` attribute, else its (wrapped) function's docstring."""
    if getattr(fn, "help", None):
        return fn.help
    inner = getattr(fn, "func", fn)  # functools.partial: the partial's own doc is generic
    return ((getattr(inner, "__doc__", None) or "").strip().splitlines() or [""])[0]


def _add_row_metrics(sums, name, task, res, fn, adapter, batch, gen_len):
    """Row metrics of one batch: per-prompt lists from ``res.extra["row_metrics"]`` (computed while
    decoding) and from the method's ``row_metrics`` (called here, outside the timed decode, for costly
    measurements such as the joint sampler's TV)."""
    found = dict((res.extra or {}).get("row_metrics") or {})
    if hasattr(fn, "metrics"):
        found.update(fn.metrics(adapter, batch, gen_len))
    acc = sums.setdefault((name, task), {})
    for metric, values in found.items():
        s = acc.setdefault(metric, [0.0, 0])
        s[0] += float(sum(values))
        s[1] += len(values)


def _rows(method_names, task_names, stats, metric_sums=None, untimed=()) -> list[dict]:
    """One row per (method, task) and per method over all tasks. Untimed methods (an oracle that reads
    the answer) get no tokens/s and no speedup, and are never the baseline."""
    rows = []
    for scope in list(task_names) + ["all"]:
        tasks = task_names if scope == "all" else [scope]
        base_tps = None
        for m in method_names:
            c, n, nfe, tok, sec, ans_nfe = (sum(stats[(m, t)][k] for t in tasks) for k in range(6))
            tps = tok / sec if sec > 0 else 0.0
            if m in untimed:
                tps = None
            elif base_tps is None:
                base_tps = tps
            rows.append({"method": m, "task": scope, "n": n, "accuracy": c / n, "nfe": nfe / n,
                         "tokens": tok, "tokens_per_forward": tok / nfe if nfe else 0.0,
                         "answer_nfe": ans_nfe / n, "answer_tokens_per_forward": tok / ans_nfe if ans_nfe else 0.0,
                         "tokens_per_s": tps, "seconds": sec,
                         "speedup": tps / base_tps if base_tps and tps is not None else None})
            extra = {}  # recipe row metrics averaged over the scope's prompts
            for t in tasks:
                for metric, (total, count) in (metric_sums or {}).get((m, t), {}).items():
                    e = extra.setdefault(metric, [0.0, 0])
                    e[0] += total
                    e[1] += count
            rows[-1].update({metric: total / count for metric, (total, count) in extra.items() if count})
    return rows


def _device_name(adapter) -> str:
    import torch
    dev = str(adapter.device)
    if dev.startswith("cuda"):
        return f"{dev} ({torch.cuda.get_device_name(adapter.device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _dtype_name(adapter) -> str:
    """The backbone's compute dtype, e.g. float32 (bf16 and fp32 rows are not comparable)."""
    p = next(adapter.model.parameters(), None)
    return str(p.dtype).replace("torch.", "") if p is not None else "unknown"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for pkg in ("accel", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
