"""The bench report: the table a person reads, the JSON a script reads, and the accuracy-vs-NFE plot.

Apart from the harness (`accel.decoding.bench`) and the timed loop (`accel.decoding.timing`), so a
new column or output format never touches the timing code. The table carries its own legend (`LEGEND`).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from accel.core.files import write_atomic
from accel.decoding.errors import OutputPathError

LEGEND = ("NFE: full-model forwards per prompt (the hardware-independent cost). tok/fwd: generated tokens "
          "(up to the first end token) per forward. ans tok/fwd: the same tokens per forward spent until the "
          "answer held no mask (TPF, what AUP integrates). tok/s: wall-clock tokens per second. speedup: tok/s "
          "relative to the first row (the baseline). AUP: accuracy under parallelism over the method's --sweep "
          "(docs/long-world.md). expected: the speedup a draft row's shape is expected to give, from the drafter's "
          "held-out acceptance and this machine's measured cost of a k-token forward (accel.decoding.cost_curve). "
          "CPU speedup: tokens per CPU-second of the process relative to the first row (on a shared machine "
          "less noisy than the wall clock). "
          "— : not meaningful (an oracle reads the answer).")

PROMPTS_LEGEND = (" identical: fraction of prompts whose output equals greedy decoding token for token (real "
                  "prompts have no exact answer; greedy acceptance must give 1.000).")

AUP_ALPHA = 3.0
"""d3LLM's penalty factor: the weight of a point falls as exp(-alpha * relative accuracy loss)."""
AUP_DROP = 5.0
"""Points more than this many accuracy points below the most careful point are left out."""


def aup(points: list[tuple[float, float]], y_max: float, alpha: float = AUP_ALPHA, drop: float = AUP_DROP) -> float:
    """Accuracy under parallelism (d3LLM) of (tokens per forward, accuracy in %) points.

    Sorted by parallelism rho; y_1 is the accuracy of the least parallel point and points below
    y_1 - drop are dropped. AUP = rho_1 * y_1 + sum_i (rho_i - rho_{i-1}) * (y_i W(y_i) + y_{i-1} W(y_{i-1})) / 2
    with W(y) = min(1, exp(-alpha * (1 - y / y_max))): the area under the accuracy-parallelism
    curve, each point weighted down by how far it falls below the best accuracy y_max.
    """
    if not points:
        raise ValueError("aup needs at least one (tokens per forward, accuracy) point")
    pts = sorted(points)
    floor = pts[0][1] - drop
    pts = [(r, y) for r, y in pts if y >= floor]

    def w(y):
        return min(1.0, math.exp(-alpha * (1 - y / y_max))) if y_max > 0 else 0.0

    total = pts[0][0] * pts[0][1]
    for (r0, y0), (r1, y1) in zip(pts, pts[1:]):
        total += 0.5 * (r1 - r0) * (y1 * w(y1) + y0 * w(y0))
    return total


def add_aup(report: dict) -> None:
    """In place: every method's AUP per task and over all tasks, from its row and its sweep points.

    Parallelism is the answer's tokens per forward, accuracy is in percent, and y_max is the best
    accuracy any row of the run reaches on that task (as the leaderboard takes the best of every
    method). Oracles (untimed rows, reading the answer) get none. Sets ``report["aup"]`` =
    {method: {task: AUP}} and an ``aup`` field on each method's own rows."""
    meta = {m["name"]: m for m in report["methods"]}
    base = {n: m.get("sweep_of", n) for n, m in meta.items()}
    out: dict[str, dict[str, float]] = {}
    for scope in list(report["tasks"]) + ["all"]:
        rows = [r for r in report["rows"] if r["task"] == scope]
        y_max = max((100 * r["accuracy"] for r in rows), default=0.0)
        curves: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            if meta.get(r["method"], {}).get("timed", True):
                curves.setdefault(base.get(r["method"], r["method"]), []).append(
                    (r["answer_tokens_per_forward"], 100 * r["accuracy"]))
        for m, pts in curves.items():
            out.setdefault(m, {})[scope] = aup(pts, y_max)
    for r in report["rows"]:
        if r["method"] in out:
            r["aup"] = out[r["method"]].get(r["task"])
    report["aup"] = out


def check_output_path(path: str | Path, setting: str) -> Path:
    """Fails before any decoding if `path` (the `setting` output: json, plot) cannot be written: a
    missing directory, a directory, read-only."""
    p = Path(path).expanduser()
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise OutputPathError(setting, p, f"is a directory; pass a file path such as {p / 'bench.json'}")
    if not parent.is_dir():
        raise OutputPathError(setting, p, f"is in directory {parent}, which does not exist; create it or choose "
                                          "another path")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise OutputPathError(setting, p, "is not writable; choose another path")
    return p


def check_plot_path(path: str | Path) -> Path:
    p = check_output_path(path, "plot")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise OutputPathError("plot", p, "needs matplotlib; install it with pip install 'accel[plot]'") from None
    if p.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise OutputPathError("plot", p, "is not an image file name: use a .png, .pdf or .svg file name")
    return p


def write_json(report: dict, path: str | Path):
    write_atomic(Path(path).expanduser(), json.dumps(report, indent=2) + "\n")


def plot_report(report: dict, path: str | Path):
    """Accuracy vs NFE on the 'all' rows, one labelled point per method.

    NFE is on a log axis: accelerated methods sit at 2-10 forwards and the one-token-per-step
    baseline at gen_len, and on a linear axis their labels pile up at the left edge. The accuracy
    axis spans the data (with a margin), not 0-1, so close accuracies stay apart.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if report.get("sweep"):
        return _plot_sweep(report, path, plt)
    rows = [r for r in report["rows"] if r["task"] == "all"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = [max(r["nfe"], 1e-3) for r in rows]
    ys = [r["accuracy"] for r in rows]
    lo, hi = min(ys), max(ys)
    pad = max(0.02, 0.15 * (hi - lo))
    ax.set_xscale("log")
    placed: list[tuple[float, float]] = []
    for r, x, y in zip(rows, xs, ys):
        ax.scatter(x, y, s=40)
        # stack the labels of nearby points (a label spans about a quarter decade) instead of overlapping them
        k = sum(abs(math.log10(x / px)) < 0.25 and abs(y - py) < 0.3 * pad for px, py in placed)
        placed.append((x, y))
        ax.annotate(r["method"], (x, y), textcoords="offset points", xytext=(6, 4 - 11 * k), fontsize=8)
    ax.set_xlabel("NFE per prompt (full-model forwards, log scale)")
    ax.set_ylabel("accuracy (all tasks)")
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) + 0.3 * pad)
    ax.set_xlim(min(xs) / 1.5, max(xs) * 2.5)
    ax.set_title(f"{report['target']} · gen {report['gen_len']} · {report['limit']} prompts/task", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)


def _plot_sweep(report: dict, path, plt):
    """The AUP curves: accuracy vs the answer's tokens per forward on the 'all' rows, one line per
    method through its sweep points (a method without a knob is a single point), AUP in the legend."""
    meta = {m["name"]: m for m in report["methods"]}
    curves: dict[str, list[tuple[float, float]]] = {}
    for r in (r for r in report["rows"] if r["task"] == "all"):
        base = meta.get(r["method"], {}).get("sweep_of", r["method"])
        curves.setdefault(base, []).append((r["answer_tokens_per_forward"], 100 * r["accuracy"]))
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for m, pts in curves.items():
        pts.sort()
        a = report.get("aup", {}).get(m, {}).get("all")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4,
                label=f"{m} (AUP {a:.0f})" if a is not None else m)
    ax.set_xlabel("tokens per forward over the answer (TPF)")
    ax.set_ylabel("accuracy (all tasks, %)")
    ax.set_title(f"{report['target']} · gen {report['gen_len']} · {report['limit']} prompts/task · sweep",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)


def cpu_speedups(rows: list[dict]) -> dict:
    """{method: tokens per CPU-second relative to the first timed row's}, over all tasks ({} when the rows
    carry no ``cpu_seconds``, the mean CPU-seconds per prompt that `timing.decode_batch` records)."""
    out, base = {}, None
    for r in rows:
        if r["task"] != "all" or not r.get("cpu_seconds") or r.get("tokens_per_s") is None:
            continue
        tps = r["tokens"] / (r["cpu_seconds"] * r["n"])
        base = base or tps
        out[r["method"]] = tps / base
    return out


def report_tables(report: dict):
    """Two rich tables: the overall comparison (with its legend), and accuracy per task per method."""
    from rich.table import Table

    def num(x, fmt):
        return "—" if x is None else format(x, fmt)

    quality = "identical" if report.get("prompts") else "accuracy"
    src = f" · {report['prompts']}" if report.get("prompts") else ""
    overall = Table(title=f"{report['target']}{src} · gen_len {report['gen_len']} · {report['device']}"
                          f"{' · ' + report['dtype'] if report.get('dtype', 'float32') != 'float32' else ''}",
                    caption=LEGEND + (PROMPTS_LEGEND if report.get("prompts") else ""), caption_justify="left")
    cols = ["method", quality, "NFE", "tok/fwd", "ans tok/fwd", "tok/s", "speedup"]
    expected = any(r.get("expected_speedup") is not None for r in report["rows"])
    if expected:  # draft rows priced on this machine's cost curve (accel.decoding.cost_curve)
        cols.append("expected")
    cpu = cpu_speedups(report["rows"])
    if cpu:
        cols.append("CPU speedup")
    if report.get("sweep"):
        cols.append("AUP")
    for col in cols:
        overall.add_column(col, justify="left" if col == "method" else "right", no_wrap=True)
    for r in (r for r in report["rows"] if r["task"] == "all"):
        cells = [r["method"], num(r["accuracy"], ".3f"), num(r["nfe"], ".1f"), num(r["tokens_per_forward"], ".2f"),
                 num(r.get("answer_tokens_per_forward"), ".2f"), num(r["tokens_per_s"], ".1f"),
                 num(r["speedup"], ".2f") + ("×" if r["speedup"] is not None else "")]
        if expected:
            e = r.get("expected_speedup")
            cells.append(num(e, ".2f") + ("×" if e is not None else ""))
        if cpu:
            c = cpu.get(r["method"])
            cells.append(num(c, ".2f") + ("×" if c is not None else ""))
        if report.get("sweep"):
            cells.append(num(r.get("aup"), ".1f"))
        overall.add_row(*cells)
    acc = {(r["method"], r["task"]): r for r in report["rows"]}
    methods = list(dict.fromkeys(r["method"] for r in report["rows"]))
    if report.get("prompts"):  # categories down, methods across: identical-to-greedy and tokens per forward
        per_task = Table(title="per category: identical to greedy · tokens per forward")
        per_task.add_column("category", no_wrap=True)
        for m in methods:
            per_task.add_column(f"{m} ident", justify="right", no_wrap=True)
            per_task.add_column(f"{m} tok/fwd", justify="right", no_wrap=True)
        for t in list(report["tasks"]) + ["all"]:
            per_task.add_row(t, *(f"{acc[(m, t)][k]:.2f}" for m in methods
                                  for k in ("accuracy", "tokens_per_forward")))
        return overall, per_task
    per_task = Table(title="accuracy per task")
    per_task.add_column("method", no_wrap=True)
    for t in report["tasks"]:  # never cut a task name to "lear…": the table is read in logs too
        per_task.add_column(t, justify="right", no_wrap=True, min_width=len(t))
    for m in methods:
        per_task.add_row(m, *(f"{acc[(m, t)]['accuracy']:.2f}" for t in report["tasks"]))
    return overall, per_task
