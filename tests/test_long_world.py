"""scripts/long_world.sh (issue 18's judged sequence) and scripts/long_summary.py (its table).

The script is run with a stand-in `accel` that records its calls and writes each step's output:
the long teachers are not built yet, so what is tested here is the sequence, the stop without
teachers and the resume. The summary is tested on a real short-world bench JSON and on reports
with known numbers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from accel.scripts import long_summary as S

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "long_world.sh"

STUB = r"""#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
val() { local want=$1; shift; while [ $# -gt 0 ]; do [ "$1" = "$want" ] && { echo "$2"; return; }; shift; done; }
case $1 in
  train|distill) d=$(val --output "$@"); mkdir -p "$d"; touch "$d/finished.json" ;;
  export) d=$(val --out "$@"); mkdir -p "$d"; echo {} > "$d/config.json" ;;
  bench) echo '{"rows": [], "methods": []}' > "$(val --json "$@")" ;;
esac
"""


def _teacher(d: Path) -> str:
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"")
    return str(d)


def _run(tmp_path, env_extra, out):
    env = {**os.environ, "STUB_LOG": str(tmp_path / "calls.log"), "PYTHON": sys.executable, **env_extra}
    return subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=120)


def test_stops_at_once_without_the_teachers(tmp_path):
    p = _run(tmp_path, {"LONG_AR": str(tmp_path / "none-ar"), "LONG_DLLM": str(tmp_path / "none-dllm")},
             tmp_path / "out")
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "accel teacher build ar-long && accel teacher build dllm-long" in lines[0]
    assert not (tmp_path / "out").exists()


def test_runs_the_judged_sequence_and_resumes(tmp_path):
    stub = tmp_path / "accel"
    stub.write_text(STUB)
    stub.chmod(0o755)
    env = {"ACCEL": str(stub), "LONG_AR": _teacher(tmp_path / "ar"), "LONG_DLLM": _teacher(tmp_path / "dllm")}
    out = tmp_path / "out"
    p = _run(tmp_path, env, out)
    assert p.returncode == 0, p.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert len(calls) == 2 + 4 * 3
    assert calls[0].startswith(f"bench {env['LONG_DLLM']} -m vanilla -m fast-dllm -m entropy-threshold")
    for name, group in (("learn2pd", "train"), ("dparallel", "distill"), ("d2f", "distill"),
                        ("joint-sampler", "train")):
        train = next(c for c in calls if c.startswith(f"{group} {name} "))
        assert f"configs/{name}/long.yaml" in train and f"backbone={env['LONG_DLLM']}" in train
        bench = next(c for c in calls if c.startswith(f"bench {out}/ckpt/{name} "))
        assert "--limit 16" in bench and "--gen-len" not in bench and "--sweep" in bench and f"{name}.json" in bench
        assert (f"--compare {env['LONG_AR']}" in bench) == (name == "d2f")
    assert "judged check" in p.stdout and (out / "summary.json").exists()

    again = _run(tmp_path, env, out)  # every output exists: nothing runs again
    assert again.returncode == 0 and len((tmp_path / "calls.log").read_text().splitlines()) == len(calls)
    assert again.stdout.count(": done (") == len(calls)


def _row(method, task, acc, nfe, tpf, tps=100.0, n=16):
    return {"method": method, "task": task, "n": n, "accuracy": acc, "nfe": nfe, "answer_tokens_per_forward": tpf,
            "tokens_per_forward": tpf, "tokens_per_s": tps}


def test_summary_ratios_and_deltas_on_known_numbers():
    reps = {
        "learn2pd": {"rows": [_row("vanilla", "all", 0.95, 256, 1.0), _row("fast-dllm", "all", 0.95, 64, 2.0),
                              _row("learn2pd+eotp", "all", 0.945, 40, 3.2), _row("oracle", "all", 0.95, 20, 5.0)]},
        "dparallel": {"rows": [_row("vanilla", "all", 0.95, 256, 1.0), _row("entropy-threshold", "all", 0.93, 60, 2.0),
                               _row("dparallel", "all", 0.93, 50, 2.4)]},
        "d2f": {"rows": [_row("vanilla", "all", 0.95, 256, 1.0, tps=50), _row("d2f", "all", 0.94, 30, 4.0, tps=900),
                         _row("builtin:ar-long/greedy", "all", 0.96, 130, 1.0, tps=300)]},
        "joint-sampler": {
            "methods": [{"name": "joint-sampler", "value": 4}, {"name": "marginal", "value": 4}],
            "rows": [_row(m, t, acc, nfe, 1.0) for t in ("long-either", "long-anystart") for m, acc, nfe in
                     (("sequential", 1.0, 128), ("marginal", 0.5, 32), ("joint-sampler", 0.9, 32))]
            + [_row("sequential", "long-count", 0.0, 999, 1.0)]},  # not a several-answers task: not pooled
    }
    checks = {c["check"]: c for c in S.summarize(reps)["checks"]}
    got = {k: (round(c["value"], 4), c["ok"]) for k, c in checks.items() if c["value"] is not None}
    assert got["teacher: oracle / fast-dllm tok/fwd"] == (2.5, True)
    assert got["learn2pd+eotp / fast-dllm tok/fwd"] == (1.6, True)
    assert got["learn2pd+eotp - vanilla accuracy"] == (-0.5, True)
    assert got["dparallel / entropy-threshold (teacher) tok/fwd"] == (1.2, False)
    assert got["dparallel - vanilla accuracy"] == (-2.0, False)
    assert got["d2f / AR greedy tokens/s"] == (3.0, True)
    assert got["d2f - vanilla accuracy"] == (-1.0, True)
    pair = "long-either+long-anystart"
    assert got[f"joint K=4 / sequential validity ({pair})"] == (0.9, True)
    assert got[f"joint K=4 / sequential forwards ({pair})"] == (0.25, True)
    assert got[f"joint K=4 - marginal K=4 validity ({pair})"] == (40.0, True)
    assert checks["teacher: (bench)"]["ok"] is None and "not run" in checks["teacher: (bench)"]["note"]


@pytest.fixture(scope="module")
def short_bench_json(tmp_path_factory):
    """A real `accel bench --sweep --json` report on the short world's builtin:dllm (2 prompts, 2 tasks)."""
    from accel.decoding.bench import run_bench
    from accel.decoding.report import write_json
    rep = run_bench("builtin:dllm", ["vanilla", "fast-dllm", "entropy-threshold"], ["shuffle", "pick3"], limit=2,
                    gen_len=32, sweep=True)
    d = tmp_path_factory.mktemp("summary")
    write_json(rep, d / "teacher.json")
    return d


def test_summary_reads_a_short_world_bench_json(short_bench_json, tmp_path):
    out = tmp_path / "summary.json"
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "long_summary.py"), str(short_bench_json), "--json",
                        str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    s = json.loads(out.read_text())
    teacher = next(c for c in s["checks"] if c["check"].startswith("teacher: vanilla"))
    assert 0 <= teacher["value"] <= 1 and teacher["note"] in ("shuffle", "pick3")
    aup = {a["method"]: a for a in s["aup"]}
    assert set(aup) == {"vanilla", "fast-dllm", "entropy-threshold"}
    assert all(a["aup"] is not None and a["aup"] >= 0 for a in aup.values())
    assert sum(c["ok"] is None for c in s["checks"]) == 4  # the four recipe JSONs are not there
    assert "fast-dllm" in p.stdout and "not run: no d2f.json" in p.stdout


def test_summary_bad_input_is_one_line(tmp_path):
    (tmp_path / "d2f.json").write_text("{not json")
    for args in ([str(tmp_path / "missing")], [str(tmp_path)]):
        p = subprocess.run([sys.executable, str(ROOT / "scripts" / "long_summary.py"), *args], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and "long_summary:" in p.stderr
