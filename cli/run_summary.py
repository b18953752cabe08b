"""What `accel train|distill` prints when a run ends (or was already finished): its final metrics
and the next command to type, read back from the run directory so both paths say the same."""
from __future__ import annotations

import json
from pathlib import Path

_SKIP = {"step", "final", "epoch", "learning_rate", "grad_norm", "train_steps", "val_steps"}
_MAX = 6


def _rows(run_dir: Path) -> list[dict]:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def final_metrics(run_dir: str | Path) -> dict:
    """The run's last `final` row, else its last logged training step, plus the step reached."""
    rows = _rows(Path(run_dir))
    step = max((r["step"] for r in rows if isinstance(r.get("step"), int)), default=None)
    final = next((r for r in reversed(rows) if r.get("final")), None)
    if final is not None:  # the recipe's own summary of the finished run
        merged = dict(final)
    else:
        last = next((r for r in reversed(rows) if "loss" in r), {})
        evals = next((r for r in reversed(rows) if any(k.startswith("eval_") for k in r)), {})
        merged = {**{k: v for k, v in evals.items() if k.startswith("eval_")}, **last}
    if step is not None:
        merged["step"] = step
    return merged


def _fmt(metrics: dict) -> str:
    keys = [k for k, v in metrics.items()
            if k not in _SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)]
    def rank(k):
        return 0 if k in ("tau", "loss") else 1 if k.startswith(("eval_", "val_")) and "@" not in k else 2
    order = sorted(keys, key=rank)
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in order[:_MAX])


def next_command(run_dir: str | Path) -> str:
    name = Path(run_dir).name or "run"
    return f"accel export {run_dir} --out ckpt/{name} && accel bench ckpt/{name}"


def done_lines(run_dir: str | Path, recipe: str) -> list[str]:
    m = final_metrics(run_dir)
    step = f" at step {m['step']}" if "step" in m else ""
    lines = [f"{recipe} run finished{step}: {run_dir}"]
    shown = _fmt(m)
    if shown:
        lines.append(f"  final metrics: {shown}")
    lines.append(f"  next: {next_command(run_dir)}")
    return lines


def finished_lines(run_dir: str | Path, recipe: str, group: str) -> list[str]:
    m = final_metrics(run_dir)
    step = f" (step {m['step']})" if "step" in m else ""
    return [f"{run_dir} is a finished {recipe} run{step}; nothing to do.",
            f"  next: {next_command(run_dir)}",
            f"  to train on (e.g. after raising max_steps): accel {group} {recipe} --output {run_dir} --continue ..."]
