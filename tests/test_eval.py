"""`accel eval`: lm-eval tasks through accel's decoders, offline, on local task YAMLs over built-in prompts.

The generate_until task is the built-in `copy` test split as lm-eval sees it (exact_match on the digits,
what the suite's own score compares), so lm-eval's metric must equal `accel bench`'s accuracy on the
same prompts and method; the multiple-choice task scores the right answer against a wrong one by
loglikelihood on the AR teacher.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from accel.cli.main import app
from accel.data import tasks as suite

lm_eval = pytest.importorskip("lm_eval")

runner = CliRunner()
N = 8
GEN_TASK = """task: accel_copy
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["<eos>"]
  max_gen_toks: 16
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    regexes_to_ignore: ["[^0-9]"]
"""
MC_TASK = """task: accel_copy_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{[answer, wrong]}}}}"
doc_to_target: 0
metric_list:
  - metric: acc
"""


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory):
    """A folder of local lm-eval tasks over the copy test split (the jsonl written here: no hub)."""
    d = tmp_path_factory.mktemp("eval_tasks")
    data = d / "copy.jsonl"
    with data.open("w") as f:
        for e in suite.test_split("copy", N):
            f.write(json.dumps({"prompt": e["prompt"], "answer": e["answer"], "wrong": e["answer"][::-1] + "1"}) + "\n")
    (d / "accel_copy.yaml").write_text(GEN_TASK.format(data=data))
    (d / "accel_copy_mc.yaml").write_text(MC_TASK.format(data=data))
    return d


def _eval(*args):
    return runner.invoke(app, ["eval", *map(str, args)])


def test_generate_until_matches_bench_with_cost_and_aup(tasks_dir, tmp_path):
    from accel.decoding.bench import run_bench
    out = tmp_path / "eval.json"
    r = _eval("builtin:dllm", "--include-path", tasks_dir, "--tasks", "accel_copy", "-m", "vanilla", "-m", "fast-dllm",
              "--limit", N, "--sweep", "--json", out)
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    # the same prompts through the bench: 16 answer tokens round up to one 32-token block
    bench = run_bench("builtin:dllm", methods=["vanilla", "fast-dllm"], gen_len=32,
                      prompt_sets={"copy": suite.test_split("copy", N)})
    for method in ("vanilla", "fast-dllm"):
        ours = report["lm_eval"][method]["results"]["accel_copy"]["exact_match,none"]
        theirs = next(row for row in bench["rows"] if row["method"] == method and row["task"] == "copy")
        assert ours == pytest.approx(theirs["accuracy"]), method
        row = next(row for row in report["rows"] if row["method"] == method and row["task"] == "accel_copy")
        assert row["nfe"] > 0 and row["answer_tokens_per_forward"] > 0 and row["tokens_per_s"] > 0
        assert row["nfe"] == pytest.approx(theirs["nfe"])
        assert report["aup"][method]["accel_copy"] > 0
    assert any(m["name"].startswith("fast-dllm@threshold=") for m in report["methods"])
    assert {"results", "configs", "versions", "n-shot"} <= set(report["lm_eval"]["fast-dllm"])  # lm-eval's schema


def test_loglikelihood_on_an_ar_model(tasks_dir):
    r = _eval("builtin:ar", "--include-path", tasks_dir, "--tasks", "accel_copy_mc", "-m", "greedy", "--limit", 4)
    assert r.exit_code == 0, r.output
    assert "acc,none" in r.output


def test_simple_evaluate_through_the_registry(tasks_dir):
    import accel.evaluation.harness  # noqa: F401 (registers "accel" with lm-eval)
    from accel.evaluation.tasks import task_manager
    res = lm_eval.simple_evaluate(model="accel", model_args="target=builtin:dllm,method=fast-dllm,batch_size=4",
                                  tasks=["accel_copy"], limit=2, task_manager=task_manager(tasks_dir),
                                  log_samples=False)
    assert 0.0 <= res["results"]["accel_copy"]["exact_match,none"] <= 1.0


def test_stop_strings_and_block_rounding():
    from accel.evaluation.harness import cut_at_stop, rounded_gen_len
    assert cut_at_stop("12;34\n56", ["\n", ";"]) == "12"
    assert cut_at_stop("1234", []) == "1234"
    assert rounded_gen_len(16, 32) == 32 and rounded_gen_len(64, 32) == 64 and rounded_gen_len(17, None) == 17


@pytest.mark.parametrize("args, expect", [
    (["--tasks", "accel_cpy"], "close names: accel_copy"),
    (["--tasks", "accel_copy", "--limit", "0"], "--limit"),
    (["--tasks", "accel_copy_mc"], "cannot score loglikelihood"),
])
def test_bad_inputs_are_one_line(tasks_dir, args, expect):
    r = _eval("builtin:dllm", "--include-path", tasks_dir, *args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and expect in lines[0], r.output


def test_missing_lm_eval_and_help_import_nothing_heavy(tmp_path):
    code = ("import sys\nsys.modules['lm_eval'] = None  # as if not installed\nfrom accel.cli.main import app\n"
            "try:\n    app(['eval', 'builtin:dllm', '--tasks', 'x'])\nexcept SystemExit as e:\n    print('EXIT', e.code)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "EXIT 2" in r.stdout and "pip install 'accel[eval]'" in r.stderr, r.stderr
    code = ("import sys\nfrom accel.cli.main import app\ntry:\n    app(['eval', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY' if {'torch', 'lm_eval'} & set(sys.modules) else 'LIGHT')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().endswith("LIGHT"), r.stdout + r.stderr
