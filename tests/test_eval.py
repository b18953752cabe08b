"""`accel eval`: lm-eval tasks through accel's decoders, offline, on local task YAMLs over built-in prompts.

The generate_until task is the built-in `copy` test split as lm-eval sees it (exact_match on the digits,
what the suite's own score compares), so lm-eval's metric must equal `accel bench`'s accuracy on the
same prompts and method; the multiple-choice task scores the right answer against a wrong one by
loglikelihood: exact on the AR teacher, the Monte Carlo ELBO on dLLMs (checked against the ELBO
enumerated exactly on short continuations, on the built-in, LLaDA and Dream conventions).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from accel.cli.main import app
from accel.data import tasks as suite

lm_eval = pytest.importorskip("lm_eval")

runner = CliRunner()
N = 8


def _local_task(name: str, output_type: str) -> str:
    """The head of a local lm-eval task YAML over a jsonl (the path left as {data} for `str.format`)."""
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {{data}}\n"
            f"test_split: test\noutput_type: {output_type}\n")


GEN_TASK = _local_task("accel_copy", "generate_until") + """doc_to_text: "{{{{prompt}}}}"
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
MC_TASK = _local_task("accel_copy_mc", "multiple_choice") + """doc_to_text: "{{{{prompt}}}}"
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


ARITH_TASK = _local_task("accel_arith", "generate_until") + """doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer.split('####')[-1].strip()}}}}"
generation_kwargs:
  until: ["<eos>"]
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "#(-?[0-9]+)$"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def test_gsm8k_format_task_without_max_gen_toks_matches_the_default_bench(tmp_path):
    """The built-in arith task in GSM8K's format (question, worked answer ending '#### N'), lm-eval's regex filter
    taking the number after the model's final '#', no max_gen_toks: it decodes at the bench's default gen_len (64
    on the built-in world, not lm-eval's 256), so lm-eval's exact_match, NFE and AUP equal plain `accel bench`'s."""
    from accel.decoding.bench import run_bench
    d = tmp_path / "tasks"
    d.mkdir()
    exs = suite.test_split("arith", N)
    with (d / "arith.jsonl").open("w") as f:
        for e in exs:
            work = e["response"].rsplit("#", 1)[0]
            f.write(json.dumps({"question": e["prompt"], "answer": f"{work}#### {e['answer']}"}) + "\n")
    (d / "accel_arith.yaml").write_text(ARITH_TASK.format(data=d / "arith.jsonl"))
    out = tmp_path / "arith.json"
    r = _eval("builtin:dllm", "--include-path", d, "--tasks", "accel_arith", "-m", "vanilla", "-m", "fast-dllm",
              "--sweep", "--json", out)
    assert r.exit_code == 0, (r.output, r.exception)
    report = json.loads(out.read_text())
    assert report["gen_len"] == {"accel_arith": [64]}
    bench = run_bench("builtin:dllm", methods=["vanilla", "fast-dllm"], sweep=True, prompt_sets={"arith": exs})
    assert bench["gen_len"] == 64
    for method in ("vanilla", "fast-dllm"):
        ours = report["lm_eval"][method]["results"]["accel_arith"]["exact_match,strict-match"]
        theirs = next(row for row in bench["rows"] if row["method"] == method and row["task"] == "arith")
        row = next(row for row in report["rows"] if row["method"] == method and row["task"] == "accel_arith")
        assert ours == pytest.approx(theirs["accuracy"]) and row["nfe"] == pytest.approx(theirs["nfe"]), method
        assert report["aup"][method]["accel_arith"] == pytest.approx(bench["aup"][method]["arith"]), method


def _cli(*args, cwd):
    """`accel ARGS` in its own process (what reaches the real stderr: library loggers, tqdm, git)."""
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    return subprocess.run([sys.executable, "-m", "accel.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)


def test_a_run_leaves_no_library_chatter_on_stderr(tasks_dir, tmp_path):
    """Outside a git repository, with stderr not a terminal: no git "fatal: not a git repository" line from
    lm-eval's run record, no tqdm bars from lm-eval or datasets, lm-eval's task-config warnings (the mc task
    names no aggregation) once each, not once per method; then the line saying where the JSON went."""
    r = _cli("eval", "builtin:dllm", "--include-path", tasks_dir, "--tasks", "accel_copy,accel_copy_mc",
             "-m", "vanilla", "-m", "fast-dllm", "--limit", 2, "--mc-samples", 4, "--mc-batch", 4, "--json", "o.json",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert not [ln for ln in lines if "fatal" in ln], r.stderr
    assert lines[-1] == "wrote o.json", r.stderr
    warned = [ln for ln in lines if ln.startswith("lm-eval: [Task: accel_copy_mc] metric acc is defined")]
    assert len(lines) == 3 and warned == lines[:2], lines
    assert json.loads((tmp_path / "o.json").read_text())["lm_eval"]["fast-dllm"]["git_hash"] is None


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed: lm-eval's lookup makes no noise")
def test_lm_evals_git_lookup_stays_off_stderr(tmp_path, capfd):
    """lm-eval's own call (`git describe --always`, stdout captured, stderr inherited) outside a repository:
    git's "fatal" line reaches our stderr, except inside `children_without_stderr`, which restores it after."""
    from accel.evaluation.run import children_without_stderr

    def lookup():
        return subprocess.run(["git", "describe", "--always"], stdout=subprocess.PIPE, cwd=tmp_path).returncode

    assert lookup() != 0 and "fatal: not a git repository" in capfd.readouterr().err  # the noise is real
    with children_without_stderr():
        assert lookup() != 0
        print("ours still shows", file=sys.stderr, flush=True)
    assert capfd.readouterr().err == "ours still shows\n"
    assert lookup() != 0 and "fatal" in capfd.readouterr().err


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
    (["--tasks", "math"], "close names: minerva_math"),
    (["--tasks", "humaneva"], "close names: humaneval"),
    (["--tasks", "accel_copy", "--limit", "0"], "--limit"),
    (["--tasks", "humaneval", "--limit", "0"], "--limit"),
    (["--tasks", "accel_copy_mc", "--mc-samples", "0"], "--mc-samples"),
])
def test_bad_inputs_are_one_line(tasks_dir, args, expect):
    r = _eval("builtin:dllm", "--include-path", tasks_dir, *args)
    assert r.exit_code == 2, r.output
    assert expect in _one_error_line(r.output)


def test_missing_lm_eval_and_help_import_nothing_heavy(tmp_path):
    code = ("import sys\nsys.modules['lm_eval'] = None  # as if not installed\nfrom accel.cli.main import app\n"
            "try:\n    app(['eval', 'builtin:dllm', '--tasks', 'x'])\nexcept SystemExit as e:\n    print('EXIT', e.code)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "EXIT 2" in r.stdout and "pip install 'accel[eval]'" in r.stderr, r.stderr
    code = ("import sys\nfrom accel.cli.main import app\ntry:\n    app(['eval', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY' if {'torch', 'lm_eval'} & set(sys.modules) else 'LIGHT')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().endswith("LIGHT"), r.stdout + r.stderr


def _one_error_line(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    return lines[0]


UNREACHABLE = {"HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there: the probe sets the offline switches
SWITCHED_OFF = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # the user's own switches


@pytest.mark.parametrize("task, offline, expect", [
    ("gsm8k", UNREACHABLE, "task gsm8k: dataset openai/gsm8k (main) is not reachable on the Hugging Face Hub"),
    ("gsm8k", SWITCHED_OFF, "task gsm8k: dataset openai/gsm8k (main) is not reachable on the Hugging Face Hub"),
    ("mbpp", SWITCHED_OFF, "task mbpp: metric code_eval"),  # its task code loads a metric from the hub first
])
def test_hub_task_offline_is_one_line_naming_the_dataset(tmp_path, task, offline, expect):
    """A hub task with the hub unreachable or switched off: one line naming what could not be had on stderr,
    nothing on stdout, exit 2, at once (no retries with back-off), before any model loads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
           and "proxy" not in k.lower()}
    env.update(HF_HOME=str(tmp_path / "hf"), **offline)  # an empty cache: nothing to fall back on
    r = subprocess.run([sys.executable, "-m", "accel.cli.main", "eval", "builtin:dllm", "--tasks", task,
                        "--limit", "2"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 2 and not r.stdout, r.stderr
    line = _one_error_line(r.stderr)
    assert expect in line and "not reachable" in line, line


# ------------------------------------------------------------------ dLLM loglikelihood


def _elbo_enumerated(adapter, ctx, cont):
    """The masked-diffusion ELBO computed exactly: every mask count m (uniform in 1..L, weight L/m) and
    every set of m positions (uniform)."""
    import itertools

    import torch

    from accel.evaluation.loglik import _logits
    P, L, total = len(ctx), len(cont), 0.0
    with torch.no_grad():
        for m in range(1, L + 1):
            sets = list(itertools.combinations(range(L), m))
            for s in sets:
                x = torch.tensor([ctx + [adapter.mask_id if j in s else c for j, c in enumerate(cont)]])
                logp = _logits(adapter, x)[0, P:].float().log_softmax(-1)
                total += (L / m) * sum(float(logp[j, cont[j]]) for j in s) / len(sets) / L
    return total


@pytest.fixture(scope="module")
def dllm_adapters(published_dllm, tiny_adapter):
    from accel.models.backbone import load_backbone
    return {"builtin": tiny_adapter("dllm"),
            **{f: load_backbone(published_dllm[f], trust_remote_code=True) for f in ("llada", "dream")}}


@pytest.mark.parametrize("family", ["builtin", "llada", "dream"])
def test_elbo_estimate_matches_the_enumerated_elbo(dllm_adapters, family):
    from accel.evaluation.loglik import dllm_elbo, dllm_greedy
    a = dllm_adapters[family]
    ctx, one, three = [5, 6, 7, 8], [9], [9, 10, 11]
    # one token: every sample masks it with t = 1, so the estimate is exact whatever the seed
    assert dllm_elbo(a, ctx, one, samples=4, batch=2)[0] == pytest.approx(_elbo_enumerated(a, ctx, one), abs=1e-4)
    exact = _elbo_enumerated(a, ctx, three)
    est, forwards = dllm_elbo(a, ctx, three, samples=384, batch=3)  # batch = L: the counts are stratified exactly
    assert forwards == 384 and est == pytest.approx(exact, rel=0.05)
    assert dllm_elbo(a, ctx, three, samples=6, batch=3, seed=1) == dllm_elbo(a, ctx, three, samples=6, batch=3, seed=1)
    assert dllm_elbo(a, ctx, three, samples=6, batch=3, seed=1) != dllm_elbo(a, ctx, three, samples=6, batch=3, seed=2)
    greedy, n = dllm_greedy(a, ctx, three)
    assert n == 3 and isinstance(greedy, bool)


def test_mask_counts_are_stratified():
    from accel.evaluation.loglik import mask_counts
    for first, length, batch in ((1, 5, 5), (3, 5, 5), (7, 10, 4), (1, 3, 32)):
        m = mask_counts(first, length, batch).tolist()
        assert all(1 <= x <= length for x in m) and m[0] == first
        if batch == length:
            assert sorted(m) == list(range(1, length + 1))


def test_loglikelihood_on_the_dllm_teacher(tasks_dir, tmp_path):
    """The built-in dLLM prefers the copied digits to a wrong answer; every method scores with the same model,
    so they report the same scores (computed once) and the same forwards."""
    out = tmp_path / "mc.json"
    r = _eval("builtin:dllm", "--include-path", tasks_dir, "--tasks", "accel_copy_mc", "-m", "vanilla", "-m",
              "fast-dllm", "--limit", 4, "--mc-samples", 8, "--mc-batch", 4, "--json", out)
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    accs = [rep["lm_eval"][m]["results"]["accel_copy_mc"]["acc,none"] for m in ("vanilla", "fast-dllm")]
    assert accs[0] == accs[1] >= 0.75
    rows = [r for r in rep["rows"] if r["task"] == "accel_copy_mc"]
    assert rows[0]["nfe"] == rows[1]["nfe"] > 2 * 8  # two choices x 8 samples, plus the greedy checks


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_published_dllm_loglikelihood_and_generation(published_dllm, tasks_dir, tmp_path, family):
    """The tiny published LLaDA and Dream (random weights) through --trust-remote-code: a multiple-choice
    task scored by the ELBO estimate and the generate_until task by three methods, no traceback."""
    out = tmp_path / "p.json"
    r = _eval(published_dllm[family], "--trust-remote-code", "--include-path", tasks_dir, "--tasks",
              "accel_copy,accel_copy_mc", "-m", "vanilla", "-m", "fast-dllm", "-m", "fast-dllm-dual",
              "--limit", 2, "--mc-samples", 4, "--mc-batch", 4, "--max-gen-toks", 8, "--block-len", 8, "--json", out)
    assert r.exit_code == 0, (r.output, r.exception)
    rep = json.loads(out.read_text())
    for m in ("vanilla", "fast-dllm", "fast-dllm-dual"):
        res = rep["lm_eval"][m]["results"]
        assert 0 <= res["accel_copy"]["exact_match,none"] <= 1 and 0 <= res["accel_copy_mc"]["acc,none"] <= 1
        row = next(x for x in rep["rows"] if x["method"] == m and x["task"] == "accel_copy")
        assert row["nfe"] > 0


# ------------------------------------------------------------------ every method through generate_until


def test_generate_until_through_every_dllm_baseline(tasks_dir, tmp_path):
    from accel.decoding.methods import available
    methods = available("dllm")
    out = tmp_path / "all.json"
    r = _eval("builtin:dllm", "--include-path", tasks_dir, "--tasks", "accel_copy", *sum((["-m", m] for m in methods), []),
              "--limit", 2, "--json", out)
    assert r.exit_code == 0, (r.output, r.exception)
    rep = json.loads(out.read_text())
    for m in methods:
        row = next(x for x in rep["rows"] if x["method"] == m and x["task"] == "accel_copy")
        assert row["nfe"] > 0 and row["accuracy"] == rep["lm_eval"][m]["results"]["accel_copy"]["exact_match,none"]
    assert rep["identical_to_greedy"] == {}  # no AR method


@pytest.fixture(scope="module")
def d2f_ckpt(tmp_path_factory, tiny_dir):
    """A D2F checkpoint distilled for 3 steps from the tiny random dLLM (its own rows: d2f, d2f-nocache)."""
    from pathlib import Path

    from accel.recipes.d2f.export import export
    from accel.recipes.d2f.train import run
    from accel.trainers.loading import load_config
    from accel.recipes import get
    d = tmp_path_factory.mktemp("d2f")
    smoke = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "d2f" / "smoke.yaml"
    cfg = load_config(get("d2f").Config, smoke, [f"backbone={tiny_dir('dllm')}", f"output_dir={d / 'run'}",
                                                 "n_per_task=1", "max_steps=3"], recipe="d2f")
    return export(run(cfg), d / "ckpt")


def test_d2f_rows_decode_but_cannot_score(d2f_ckpt, tasks_dir):
    r = _eval(d2f_ckpt, "--include-path", tasks_dir, "--tasks", "accel_copy", "-m", "vanilla", "-m", "d2f",
              "-m", "d2f-nocache", "--limit", 2)
    assert r.exit_code == 0, (r.output, r.exception)
    assert "d2f-nocache" in r.output
    # its own process: lm-eval's warnings about the mc task's config would reach the real stderr before the error
    r = _cli("eval", d2f_ckpt, "--include-path", tasks_dir, "--tasks", "accel_copy_mc", "-m", "vanilla", "-m", "d2f",
             cwd=tasks_dir)
    assert r.returncode == 2 and not r.stdout, r.stderr
    line = _one_error_line(r.stderr)
    assert "method d2f" in line and "cannot score" in line and "block-causally" in line, line


@pytest.fixture(scope="module")
def eagle3_ckpt(tmp_path_factory):
    """An untrained EAGLE-3 draft on the built-in AR teacher, exported (a finished run without training:
    decoding is what is under test; greedy acceptance keeps it identical to greedy whatever it drafts)."""
    import torch

    from accel.models.backbone import load_backbone
    from accel.models.weights import builtin_dir
    from accel.recipes import get
    from accel.recipes.eagle3.export import export
    from accel.recipes.eagle3.train import build_draft, save_final
    from accel.trainers.loading import load_config
    if not (builtin_dir("ar") / "model.safetensors").exists():
        pytest.skip("built-in AR teacher not in this checkout")
    d = tmp_path_factory.mktemp("eagle3")
    cfg = load_config(get("eagle3").Config, None, [f"output_dir={d / 'run'}", "draft_vocab_size=64", "ttt_steps=3"],
                      recipe="eagle3")
    adapter = load_backbone("builtin:ar", device="cpu")
    torch.manual_seed(0)
    draft = build_draft(cfg, adapter, [([3], list(range(4, 60)))])
    stats = {"topk_accuracy": [[0.9, 0.05, 0.0, 0.0], [0.7, 0.2, 0.0, 0.0], [0.6, 0.2, 0.0, 0.0]]}
    save_final(draft, cfg, d / "run" / "final", stats)
    return export(d / "run", d / "ck", tree_nodes=4)


def test_ar_tree_methods_identical_to_greedy(eagle3_ckpt, tasks_dir, tmp_path):
    """EAGLE-3 tree, static tree and chain through generate_until: identical to greedy (1.0, in the JSON and the
    table), the same exact_match; sampling is not lossless and gets no such figure."""
    out = tmp_path / "ar.json"
    methods = ["greedy", "eagle3", "eagle3-static", "eagle3-chain", "sample"]
    r = _eval(eagle3_ckpt, "--include-path", tasks_dir, "--tasks", "accel_copy", *sum((["-m", m] for m in methods), []),
              "--limit", 4, "--json", out)
    assert r.exit_code == 0, (r.output, r.exception)
    assert "≡ greedy" in r.output
    rep = json.loads(out.read_text())
    assert set(rep["identical_to_greedy"]) == {"greedy", "eagle3", "eagle3-static", "eagle3-chain"}
    greedy_em = rep["lm_eval"]["greedy"]["results"]["accel_copy"]["exact_match,none"]
    for m in ("eagle3", "eagle3-static", "eagle3-chain"):
        assert rep["identical_to_greedy"][m] == {"accel_copy": 1.0, "all": 1.0}
        assert rep["lm_eval"][m]["results"]["accel_copy"]["exact_match,none"] == greedy_em
        row = next(x for x in rep["rows"] if x["method"] == m and x["task"] == "accel_copy")
        assert row["identical_to_greedy"] == 1.0 and row["nfe"] > 0
    assert "identical_to_greedy" not in next(x for x in rep["rows"] if x["method"] == "sample")


def test_identical_to_greedy_decodes_its_reference_when_greedy_did_not_run(eagle3_ckpt, tasks_dir, tmp_path):
    out = tmp_path / "chain.json"
    r = _eval(eagle3_ckpt, "--include-path", tasks_dir, "--tasks", "accel_copy", "-m", "eagle3-chain", "--limit", 2,
              "--json", out)
    assert r.exit_code == 0, (r.output, r.exception)
    assert json.loads(out.read_text())["identical_to_greedy"] == {"eagle3-chain": {"accel_copy": 1.0, "all": 1.0}}


def test_humaneval_lossless_methods_get_the_same_pass_at_1(eagle3_ckpt, tmp_path):
    """greedy and eagle3-chain on HumanEval: the same completions, so the same pass@1 (each distinct program is
    run once and its verdict shared), identical to greedy 1.0, tokens per forward of each."""
    out = tmp_path / "he.json"
    r = _eval(eagle3_ckpt, "--tasks", "humaneval", "-m", "greedy", "-m", "eagle3-chain", "--limit", 3,
              "--max-gen-toks", 16, "--json", out)
    assert r.exit_code == 0, (r.output, r.exception)
    rep = json.loads(out.read_text())
    he = {m: rep["lm_eval"][m] for m in ("greedy", "eagle3-chain")}
    passed = {m: res["results"]["humaneval"]["pass@1,none"] for m, res in he.items()}
    assert passed["greedy"] == passed["eagle3-chain"]
    assert [s["completion"] for s in he["greedy"]["samples"]["humaneval"]] == \
        [s["completion"] for s in he["eagle3-chain"]["samples"]["humaneval"]]
    assert rep["identical_to_greedy"]["eagle3-chain"] == {"humaneval": 1.0, "all": 1.0}
    for m in he:
        row = next(x for x in rep["rows"] if x["method"] == m and x["task"] == "humaneval")
        assert row["n"] == 3 and row["answer_tokens_per_forward"] > 0
