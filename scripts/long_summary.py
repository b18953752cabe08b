"""The judged numbers of issue 18 from the bench JSONs of `scripts/long_world.sh`, as one table.

usage: python scripts/long_summary.py DIR [--json OUT]

DIR holds `accel bench --json` reports named teacher.json (vanilla / fast-dllm / entropy-threshold
on the dLLM teacher), learn2pd.json, dparallel.json, d2f.json (run with --compare on the AR
teacher) and joint-sampler.json; a missing file leaves its checks "not run". Every ratio is
taken inside one report (same prompts, same run), on the `all` row, except the joint sampler's,
which pools the several-valid-answers tasks (long-either, long-anystart; shuffle, pick3 on a
short-world report). Tokens per forward is over the answer (`answer_tokens_per_forward`).
Accuracy deltas are in points (percent). Reads JSON only: no torch, no model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accel.data.tasks import LONG_MULTI_ANSWER_TASKS, MULTI_ANSWER_TASKS

FILES = ("teacher", "learn2pd", "dparallel", "d2f", "joint-sampler")


def _rows(rep: dict, tasks=("all",)) -> dict[str, dict]:
    """{method: row} pooled over `tasks` (n-weighted means; a single task is its own row)."""
    out: dict[str, dict] = {}
    for r in rep.get("rows", []):
        if r["task"] in tasks:
            out.setdefault(r["method"], []).append(r)
    pooled = {}
    for m, rs in out.items():
        n = sum(r["n"] for r in rs) or 1
        pooled[m] = {k: sum(r[k] * r["n"] for r in rs) / n
                     for k in ("accuracy", "nfe", "answer_tokens_per_forward", "tokens_per_forward", "tokens_per_s")
                     if all(r.get(k) is not None for r in rs)}
    return pooled


def _tpf(row: dict) -> float:
    return row.get("answer_tokens_per_forward", row.get("tokens_per_forward"))


def _check(name: str, value, bar: str, ok, note: str = "") -> dict:
    return {"check": name, "value": value, "bar": bar, "ok": ok, "note": note}


def _ratio(name, rows, a, b, key, bar_min=None, bar_max=None):
    if a not in rows or b not in rows or not rows[b].get(key):
        missing = a if a not in rows else b
        return _check(name, None, _bar(bar_min, bar_max, "x"), None, f"no {missing} row")
    v = rows[a][key] / rows[b][key]
    return _check(name, v, _bar(bar_min, bar_max, "x"), _within(v, bar_min, bar_max))


def _delta(name, rows, a, b, bar_min):
    if a not in rows or b not in rows:
        return _check(name, None, _bar(bar_min, None, " pt"), None, f"no {a if a not in rows else b} row")
    v = 100 * (rows[a]["accuracy"] - rows[b]["accuracy"])
    return _check(name, v, _bar(bar_min, None, " pt"), v >= bar_min - 1e-9)


def _bar(lo, hi, unit):
    return f">= {lo:g}{unit}" if lo is not None else f"<= {hi:g}{unit}"


def _within(v, lo, hi):
    return (lo is None or v >= lo - 1e-9) and (hi is None or v <= hi + 1e-9)


def _find(rows: dict, *names: str) -> str | None:
    """The first of `names` present, also as a compare row ``<target>/<name>``."""
    for n in names:
        if n in rows:
            return n
        hit = next((m for m in rows if m.endswith("/" + n)), None)
        if hit:
            return hit
    return None


def teacher_checks(rep: dict) -> list[dict]:
    per = {r["task"]: r["accuracy"] for r in rep.get("rows", []) if r["method"] == "vanilla" and r["task"] != "all"}
    if not per:
        return [_check("teacher: vanilla accuracy, worst task", None, ">= 0.9", None, "no vanilla rows")]
    worst = min(per, key=per.get)
    return [_check("teacher: vanilla accuracy, worst task", per[worst], ">= 0.9", per[worst] >= 0.9, worst)]


def learn2pd_checks(rep: dict) -> list[dict]:
    rows = _rows(rep)
    return [_ratio("teacher: oracle / fast-dllm tok/fwd", rows, "oracle", "fast-dllm", "answer_tokens_per_forward", 2),
            _ratio("learn2pd+eotp / fast-dllm tok/fwd", rows, "learn2pd+eotp", "fast-dllm",
                   "answer_tokens_per_forward", 1.5),
            _delta("learn2pd+eotp - vanilla accuracy", rows, "learn2pd+eotp", "vanilla", -1)]


def dparallel_checks(rep: dict) -> list[dict]:
    rows = _rows(rep)
    return [_ratio("dparallel / entropy-threshold (teacher) tok/fwd", rows, "dparallel", "entropy-threshold",
                   "answer_tokens_per_forward", 1.3),
            _delta("dparallel - vanilla accuracy", rows, "dparallel", "vanilla", -1)]


def d2f_checks(rep: dict) -> list[dict]:
    rows = _rows(rep)
    ar = _find(rows, "greedy")
    out = [_ratio("d2f / AR greedy tokens/s", rows, "d2f", ar or "greedy", "tokens_per_s", 2)]
    return out + [_delta("d2f - vanilla accuracy", rows, "d2f", "vanilla", -2)]


def joint_checks(rep: dict) -> list[dict]:
    present = {r["task"] for r in rep.get("rows", [])}
    tasks = [t for t in LONG_MULTI_ANSWER_TASKS if t in present] or [t for t in MULTI_ANSWER_TASKS if t in present]
    rows = _rows(rep, tuple(tasks))
    meta = {m["name"]: m for m in rep.get("methods", [])}
    # the bars are at K = 4: the method's own row when its K is 4, else its K=4 sweep point
    js = "joint-sampler" if meta.get("joint-sampler", {}).get("value") == 4 else _find(rows, "joint-sampler@k=4")
    mg = "marginal" if meta.get("marginal", {}).get("value") == 4 else _find(rows, "marginal@k=4")
    js, mg = js or "joint-sampler@k=4", mg or "marginal@k=4"
    where = "+".join(tasks) or "no multi-answer task"
    return [_ratio(f"joint K=4 / sequential validity ({where})", rows, js, "sequential", "accuracy", 0.8),
            _ratio(f"joint K=4 / sequential forwards ({where})", rows, js, "sequential", "nfe", None, 0.25),
            _delta(f"joint K=4 - marginal K=4 validity ({where})", rows, js, mg, 20)]


CHECKS = {"teacher": teacher_checks, "learn2pd": learn2pd_checks, "dparallel": dparallel_checks,
          "d2f": d2f_checks, "joint-sampler": joint_checks}


def aup_rows(name: str, rep: dict) -> list[dict]:
    """Every method's AUP on `all`, beside its own row's accuracy and tokens per forward."""
    rows = _rows(rep)
    return [{"file": name, "method": m, "aup": a.get("all"), "accuracy": rows.get(m, {}).get("accuracy"),
             "tpf": _tpf(rows[m]) if m in rows else None} for m, a in (rep.get("aup") or {}).items()]


def summarize(reports: dict[str, dict]) -> dict:
    """{"checks": [...], "aup": [...]} from {file stem: bench report}; absent reports give "not run" checks."""
    checks, aups = [], []
    for name, fn in CHECKS.items():
        rep = reports.get(name)
        if rep is None:
            checks.append(_check(f"{name}: (bench)", None, "", None, f"not run: no {name}.json"))
            continue
        checks += fn(rep)
        aups += aup_rows(name, rep)
    return {"checks": checks, "aup": aups}


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def render(summary: dict) -> str:
    lines = [f"{'judged check':<58} {'value':>9}  {'bar':<10} {'ok':<4} note"]
    for c in summary["checks"]:
        ok = {True: "yes", False: "NO", None: "—"}[c["ok"]]
        lines.append(f"{c['check']:<58} {_fmt(c['value']):>9}  {c['bar']:<10} {ok:<4} {c['note']}")
    lines += ["", f"{'AUP (all)':<36} {'AUP':>9} {'accuracy':>9} {'tok/fwd':>8}"]
    for a in summary["aup"]:
        lines.append(f"{a['file'] + ': ' + a['method']:<36} {_fmt(a['aup']):>9} {_fmt(a['accuracy']):>9} "
                     f"{_fmt(a['tpf']):>8}")
    return "\n".join(lines)


def load_reports(d: Path) -> dict[str, dict]:
    out = {}
    for name in FILES:
        f = d / f"{name}.json"
        if f.exists():
            try:
                out[name] = json.loads(f.read_text())
            except json.JSONDecodeError as e:
                raise SystemExit(f"long_summary: {f} is not a bench JSON ({e.msg}); rerun its `accel bench --json`")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path, help="folder of the bench JSONs (scripts/long_world.sh's OUT)")
    p.add_argument("--json", type=Path, help="also write the summary as JSON")
    a = p.parse_args(argv)
    if not a.dir.is_dir():
        raise SystemExit(f"long_summary: {a.dir} is not a folder; pass the OUT of scripts/long_world.sh")
    s = summarize(load_reports(a.dir))
    print(render(s))
    if a.json:
        a.json.write_text(json.dumps(s, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
