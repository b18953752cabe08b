"""The terminal table of an `accel eval` report: one row per method and task, lm-eval's primary metric
beside accel's cost figures (the JSON holds every metric; this is what a person reads first)."""
from __future__ import annotations

from rich.table import Table

from accel.decoding.report import LEGEND


def eval_table(report: dict):
    """A rich Table: method, task, metric, value, NFE, ans tok/fwd, tok/s, speedup, identical to greedy (lossless
    AR methods; "—" for the others) and AUP with --sweep."""
    def num(x, fmt):
        return "—" if x is None else format(x, fmt)

    table = Table(title=f"{report['target']} · lm-eval · {report['device']}", caption=LEGEND, caption_justify="left")
    cols = ["method", "task", "metric", "value", "NFE", "ans tok/fwd", "tok/s", "speedup"]
    identical = bool(report.get("identical_to_greedy"))
    if identical:
        cols.append("≡ greedy")
    if report.get("sweep"):
        cols.append("AUP")
    for col in cols:
        table.add_column(col, justify="left" if col in ("method", "task", "metric") else "right", no_wrap=True)
    for r in report["rows"]:
        if r["task"] == "all" and len(report["tasks"]) == 1:
            continue
        cells = [r["method"], r["task"], r.get("metric") or "—", num(r["accuracy"], ".3f"), num(r["nfe"], ".1f"),
                 num(r.get("answer_tokens_per_forward"), ".2f"), num(r["tokens_per_s"], ".1f"),
                 num(r["speedup"], ".2f") + ("×" if r["speedup"] is not None else "")]
        if identical:
            cells.append(num(r.get("identical_to_greedy"), ".3f"))
        if report.get("sweep"):
            cells.append(num(r.get("aup"), ".1f"))
        table.add_row(*cells)
    return table
