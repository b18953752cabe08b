"""The bench report: the table a person reads, the JSON a script reads, and the accuracy-vs-NFE plot.

Apart from the harness (`accel.decoding.bench`), so a new column or output format never
touches the timing code. The table carries its own legend (`LEGEND`).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

LEGEND = ("NFE: full-model forwards per prompt (the hardware-independent cost). tok/fwd: generated tokens "
          "(up to the first end token) per forward. tok/s: wall-clock tokens per second. speedup: tok/s relative "
          "to the first row (the baseline). — : not meaningful (an oracle reads the answer).")


def check_output_path(path: str | Path, flag: str) -> Path:
    """Fails before any decoding if `path` cannot be written (missing dir, a directory, read-only)."""
    from accel.decoding.bench import BenchError
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
    from accel.decoding.bench import BenchError
    p = check_output_path(path, "--plot")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BenchError("--plot needs matplotlib; install it with pip install 'accel[plot]'") from None
    if p.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise BenchError(f"--plot {p}: use a .png, .pdf or .svg file name")
    return p


def write_json(report: dict, path: str | Path):
    from accel.core.files import write_atomic
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


def report_tables(report: dict):
    """Two rich tables: the overall comparison (with its legend), and accuracy per task per method."""
    from rich.table import Table

    def num(x, fmt):
        return "—" if x is None else format(x, fmt)

    overall = Table(title=f"{report['target']} · gen_len {report['gen_len']} · {report['device']}",
                    caption=LEGEND, caption_justify="left")
    for col in ("method", "accuracy", "NFE", "tok/fwd", "tok/s", "speedup"):
        overall.add_column(col, justify="left" if col == "method" else "right", no_wrap=True)
    for r in (r for r in report["rows"] if r["task"] == "all"):
        overall.add_row(r["method"], num(r["accuracy"], ".3f"), num(r["nfe"], ".1f"),
                        num(r["tokens_per_forward"], ".2f"), num(r["tokens_per_s"], ".1f"),
                        num(r["speedup"], ".2f") + ("×" if r["speedup"] is not None else ""))
    per_task = Table(title="accuracy per task")
    per_task.add_column("method", no_wrap=True)
    for t in report["tasks"]:  # never cut a task name to "lear…": the table is read in logs too
        per_task.add_column(t, justify="right", no_wrap=True, min_width=len(t))
    acc = {(r["method"], r["task"]): r["accuracy"] for r in report["rows"]}
    for m in dict.fromkeys(r["method"] for r in report["rows"]):
        per_task.add_row(m, *(f"{acc[(m, t)]:.2f}" for t in report["tasks"]))
    return overall, per_task
