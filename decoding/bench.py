"""The bench harness: the same prompts decoded by every method in one process, side by side.

Numbers follow DESIGN.md: accuracy (the task suite's exact-match/validity score) next to NFE
(full-model forwards per prompt), tokens per forward, tokens/s and the tokens/s ratio to the
first method of the same run (the baseline). Tokens are counted identically for every method —
generated ids up to and including the first end token — so a method cannot look fast by
emitting padding after its answer. Each method is warmed up once on a tiny batch before timing.

TARGET kinds: ``builtin:dllm``/``builtin:ar``, an HF model directory (dLLM or causal LM), or an
accel inference checkpoint, whose recipe supplies the methods through
``accel.recipes.<name>.inference`` (`DEFAULT_METHODS`, `bench_methods(ckpt, adapter)`).

No torch at import time: the CLI imports this module for its cheap checks.
"""
from __future__ import annotations

import importlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

DEFAULT_LIMIT = 32
DEFAULT_BATCH_SIZE = 32
DEFAULT_BLOCK_LEN = 32
BUILTIN_GEN_LEN = 64
"""Built-in world answers are <= 20 tokens; 64 leaves room and stays fast."""
MODEL_GEN_LEN = 256
"""Real backbones (LLaDA, Dream, Llama...) write longer answers: the papers' setting."""


class BenchError(ValueError):
    """Bad bench input (target, method, lengths, output path); the message says the fix."""


@dataclass
class Target:
    """A loaded TARGET: its backbone adapter and the methods it offers."""
    spec: str
    adapter: object
    default_methods: list[str]
    recipe_methods: dict[str, Callable] = field(default_factory=dict)
    """Methods a checkpoint's recipe provides (empty for plain models)."""
    checkpoint: object = None
    default_batch_size: int = 0
    """The recipe's bench batch size when --batch-size is not given (0: DEFAULT_BATCH_SIZE)."""

    @property
    def kind(self) -> str:
        return self.adapter.kind


def check_target(spec: str) -> str:
    """Cheap validation before any model is loaded: 'dllm', 'ar' or 'checkpoint'."""
    from accel.models.backbone import BUILTIN, BackboneError, detect_family
    if spec.startswith("builtin:"):
        if spec not in BUILTIN:
            raise BackboneError(f"unknown built-in model {spec!r}; choose builtin:dllm or builtin:ar")
        return spec.split(":", 1)[1]
    p = Path(spec).expanduser()
    if not p.exists():
        raise BackboneError(f"model directory {p} does not exist; pass builtin:dllm, builtin:ar, "
                            "a local HF model directory or an exported accel checkpoint")
    if not p.is_dir():
        raise BackboneError(f"{p} is a file, not a model directory; pass the directory holding config.json")
    cfg_file = p / "config.json"
    if not cfg_file.exists():
        raise BackboneError(f"{p} is not a model directory: no config.json in it "
                            "(expected an HF model saved with save_pretrained, or an accel checkpoint)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except ValueError as e:
        raise BackboneError(f"{cfg_file} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise BackboneError(f"{cfg_file} is not a model config (expected a JSON object)")
    return "checkpoint" if "accel" in cfg else detect_family(cfg)[1]


def recipe_inference(recipe: str):
    """The `inference` module of a recipe named in a checkpoint, with clear errors."""
    from accel.cli.recipes import PLANNED, RECIPES
    entry = next((r for r in RECIPES if r.name == recipe), None)
    if entry is None:
        if recipe in PLANNED:
            raise BenchError(f"the checkpoint's recipe {recipe!r} is not built in this version of accel")
        raise BenchError(f"the checkpoint's recipe {recipe!r} is unknown to this accel "
                         f"(known: {', '.join(r.name for r in RECIPES)}); upgrade accel or re-export")
    name = entry.module + ".inference"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            raise BenchError(f"recipe {recipe!r} has no inference module ({name}) in this version of accel; "
                             "it cannot decode its checkpoints yet") from None
        raise


def load_target(spec: str, trust_remote_code: bool = False, device: str | None = None) -> Target:
    """Loads a TARGET (built-in, model directory or accel checkpoint) onto `device`."""
    from accel.decoding.checkpoint import load_checkpoint
    from accel.decoding.methods import DEFAULT_METHODS
    from accel.models.backbone import load_backbone

    device = device or default_device()
    if check_target(spec) == "checkpoint":
        ckpt = load_checkpoint(spec)
        inference = recipe_inference(ckpt.recipe)
        adapter = load_backbone(ckpt.backbone_target(), trust_remote_code=trust_remote_code, device=device)
        methods = dict(inference.bench_methods(ckpt, adapter))
        return Target(spec=spec, adapter=adapter, default_methods=list(inference.DEFAULT_METHODS),
                      recipe_methods=methods, checkpoint=ckpt,
                      default_batch_size=getattr(inference, "DEFAULT_BATCH_SIZE", 0))
    adapter = load_backbone(spec, trust_remote_code=trust_remote_code, device=device)
    return Target(spec=spec, adapter=adapter, default_methods=list(DEFAULT_METHODS[adapter.kind]))


def select_methods(target: Target, names: list[str] | None = None, options: dict | None = None,
                   block_len: int | None = None) -> dict[str, Callable]:
    """{name: MethodFn} for `names` (default: the target's defaults), recipe methods first.

    `options` go to every baseline method that declares the key (an option no selected method
    declares is an error); `block_len` overrides the block of every dLLM baseline method.
    """
    from accel.decoding.methods import MethodError, available, get_method

    names = list(dict.fromkeys(names or target.default_methods))
    options = dict(options or {})
    if block_len is not None and target.kind == "dllm":
        options["block_len"] = block_len
    out, used = {}, set()
    for name in names:
        if name in target.recipe_methods:
            out[name] = target.recipe_methods[name]
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


def default_gen_len(adapter) -> int:
    """64 for models speaking the built-in world's tokenizer, 256 for real backbones."""
    from accel.data.tokenizer import VOCAB
    try:
        builtin = len(adapter.tokenizer) == len(VOCAB) and set(VOCAB) <= set(adapter.tokenizer.get_vocab())
    except (AttributeError, TypeError):
        builtin = False
    return BUILTIN_GEN_LEN if builtin or str(adapter.source).startswith("builtin:") else MODEL_GEN_LEN


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


def encode_prompt(tokenizer, text: str) -> list[int]:
    """User text in the model's chat format (plain encoding when it has no chat template)."""
    from accel.data.tokenizer import chat_prompt_ids
    if getattr(tokenizer, "chat_template", None):
        ids = chat_prompt_ids(tokenizer, text)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    return list(tokenizer(text)["input_ids"])


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
              device: str | None = None, prompts: str | None = None) -> dict:
    """Decodes `limit` test prompts per task with every method; returns the report dict.

    target: a TARGET string or a loaded `Target`. compare: more TARGETs whose default methods
    join the run as extra rows (renamed ``<target>/<method>`` only on a name clash).
    progress(done, total, description) is called as prompts finish. prompts: a real prompt set
    (`accel.decoding.prompt_sets`: mtbench, sharegpt, a .jsonl) instead of the task suite, AR targets
    only; its categories are the rows' tasks and the quality score is ``identical_to_greedy``.
    """
    from accel.data.tasks import resolve_tasks, score, test_split

    if limit is not None and limit < 1:
        raise BenchError(f"--limit must be >= 1 (got {limit})")
    if batch_size is not None and batch_size < 1:
        raise BenchError(f"--batch-size must be >= 1 (got {batch_size})")
    from accel.decoding import prompt_sets
    main = target if isinstance(target, Target) else load_target(target, trust_remote_code, device)
    if prompts:
        if main.kind != "ar":
            raise BenchError(f"--prompts {prompts}: real prompt sets are scored against greedy decoding, which "
                             f"needs an AR target ({main.spec} is a {main.kind}); drop --prompts")
        examples = prompt_sets.load_prompt_set(prompts, limit)
        task_names = list(examples)
    else:
        task_names = resolve_tasks(tasks)
    batch_size = batch_size or main.default_batch_size or DEFAULT_BATCH_SIZE
    gen_len = gen_len or default_gen_len(main.adapter)
    if limit is None and not prompts:
        limit = default_limit(gen_len, main.adapter)
    runs = [(n, fn, main) for n, fn in select_methods(main, methods, options, block_len).items()]
    for spec in compare:
        other = spec if isinstance(spec, Target) else load_target(spec, trust_remote_code, device)
        taken = {r[0] for r in runs}
        for n, fn in select_methods(other, None, None, block_len).items():
            runs.append((f"{other.spec}/{n}" if n in taken else n, fn, other))
    for _, fn, _t in runs:
        check_gen_len(gen_len, {_: fn})

    if not prompts:
        examples = {t: test_split(t, limit) for t in task_names}
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
            s = stats.setdefault((name, task), [0, 0, 0, 0, 0.0])
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
                done += len(batch)
                if progress:
                    progress(done, total, f"{name}: {task}")

    if prompts:
        _score_against_greedy(runs, task_names, encoded, outputs, stats, gen_len, batch_size, progress)
    rows = _rows([r[0] for r in runs], task_names, stats, metric_sums)
    if prompts:
        for r in rows:
            r[prompt_sets.QUALITY] = r["accuracy"]
    return {
        "prompts": prompts, "quality": prompt_sets.QUALITY if prompts else "accuracy",
        "target": main.spec, "compare": [c.spec if isinstance(c, Target) else c for c in compare],
        "kind": main.kind, "gen_len": gen_len, "block_len": block_len, "limit": limit, "batch_size": batch_size,
        "tasks": task_names,
        "methods": [{"name": n, "target": t.spec, "kind": t.kind,
                     "help": method_help(fn)}
                    for n, fn, t in runs],
        "device": _device_name(main.adapter), "versions": _versions(), "rows": rows,
    }


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


def method_help(fn) -> str:
    """A MethodFn's one-line help: its `help` attribute, else its (wrapped) function's docstring."""
    if getattr(fn, "help", None):
        return fn.help
    inner = getattr(fn, "func", fn)  # functools.partial: the partial's own doc is generic
    return ((getattr(inner, "__doc__", None) or "").strip().splitlines() or [""])[0]


def _add_row_metrics(sums, name, task, res, fn, adapter, batch, gen_len):
    """Recipe row metrics of one batch: per-prompt lists from ``res.extra["row_metrics"]`` (computed
    while decoding) and from ``fn.row_metrics(adapter, prompts, gen_len)`` (an optional method hook
    called here, outside the timed decode, for costly measurements such as the joint sampler's TV)."""
    found = dict((res.extra or {}).get("row_metrics") or {})
    hook = getattr(fn, "row_metrics", None)
    if callable(hook):
        found.update(hook(adapter, batch, gen_len) or {})
    acc = sums.setdefault((name, task), {})
    for metric, values in found.items():
        s = acc.setdefault(metric, [0.0, 0])
        s[0] += float(sum(values))
        s[1] += len(values)


def _rows(method_names, task_names, stats, metric_sums=None) -> list[dict]:
    rows = []
    for scope in list(task_names) + ["all"]:
        tasks = task_names if scope == "all" else [scope]
        base_tps = None
        for m in method_names:
            c, n, nfe, tok, sec = (sum(stats[(m, t)][k] for t in tasks) for k in range(5))
            tps = tok / sec if sec > 0 else 0.0
            if base_tps is None:
                base_tps = tps
            rows.append({"method": m, "task": scope, "n": n, "accuracy": c / n, "nfe": nfe / n,
                         "tokens": tok, "tokens_per_forward": tok / nfe if nfe else 0.0,
                         "tokens_per_s": tps, "seconds": sec,
                         "speedup": tps / base_tps if base_tps else None})
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


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for pkg in ("accel", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def check_output_path(path: str | Path, flag: str) -> Path:
    """Fails before any decoding if `path` cannot be written (missing dir, a directory, read-only)."""
    p = Path(path).expanduser()
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise BenchError(f"{flag} {p} is a directory; pass a file path such as {p / 'bench.json'}")
    if not parent.is_dir():
        raise BenchError(f"{flag} {p}: directory {parent} does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise BenchError(f"{flag} {p} is not writable; choose another path")
    return p


def check_plot_path(path: str | Path) -> Path:
    p = check_output_path(path, "--plot")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BenchError("--plot needs matplotlib; install it with pip install 'accel[plot]'") from None
    if p.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise BenchError(f"--plot {p}: use a .png, .pdf or .svg file name")
    return p


def write_json(report: dict, path: str | Path):
    p = Path(path).expanduser()
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(p)


def plot_report(report: dict, path: str | Path):
    """Accuracy vs NFE on the 'all' rows, one labelled point per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if r["task"] == "all"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    max_nfe = max([r["nfe"] for r in rows] + [1.0])
    placed: list[tuple[float, float]] = []
    for r in rows:
        x, y = r["nfe"], r["accuracy"]
        ax.scatter(x, y, s=40)
        # stack the labels of (nearly) coincident points instead of drawing them on top of each other
        k = sum(abs(x - px) < 0.03 * max_nfe and abs(y - py) < 0.03 for px, py in placed)
        placed.append((x, y))
        ax.annotate(r["method"], (x, y), textcoords="offset points", xytext=(6, 4 - 11 * k), fontsize=8)
    ax.set_xlabel("NFE per prompt (full-model forwards)")
    ax.set_ylabel("accuracy (all tasks)")
    ax.set_ylim(-0.03, 1.08)
    ax.set_xlim(0, max_nfe * 1.25)
    ax.set_title(f"{report['target']} · gen {report['gen_len']} · {report['limit']} prompts/task", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)


def report_tables(report: dict):
    """Two rich tables: the overall comparison, and accuracy per task per method."""
    from rich.table import Table

    def num(x, fmt):
        return "-" if x is None else format(x, fmt)

    quality = "identical" if report.get("prompts") else "accuracy"
    src = f" · {report['prompts']}" if report.get("prompts") else ""
    overall = Table(title=f"{report['target']}{src} · gen_len {report['gen_len']} · {report['device']}")
    for col in ("method", quality, "NFE", "tok/fwd", "tok/s", "speedup"):
        overall.add_column(col, justify="left" if col == "method" else "right")
    for r in (r for r in report["rows"] if r["task"] == "all"):
        overall.add_row(r["method"], num(r["accuracy"], ".3f"), num(r["nfe"], ".1f"),
                        num(r["tokens_per_forward"], ".2f"), num(r["tokens_per_s"], ".1f"),
                        num(r["speedup"], ".2f") + ("x" if r["speedup"] is not None else ""))
    acc = {(r["method"], r["task"]): r for r in report["rows"]}
    methods = list(dict.fromkeys(r["method"] for r in report["rows"]))
    if report.get("prompts"):  # categories down, methods across: identical-to-greedy and tokens per forward
        per_task = Table(title="per category: identical to greedy · tokens per forward")
        per_task.add_column("category")
        for m in methods:
            per_task.add_column(f"{m} ident", justify="right")
            per_task.add_column(f"{m} tok/fwd", justify="right")
        for t in list(report["tasks"]) + ["all"]:
            per_task.add_row(t, *(f"{acc[(m, t)][k]:.2f}" for m in methods
                                  for k in ("accuracy", "tokens_per_forward")))
        return overall, per_task
    per_task = Table(title="accuracy per task")
    per_task.add_column("method")
    for t in report["tasks"]:
        per_task.add_column(t, justify="right")
    for m in methods:
        per_task.add_row(m, *(f"{acc[(m, t)]['accuracy']:.2f}" for t in report["tasks"]))
    return overall, per_task
