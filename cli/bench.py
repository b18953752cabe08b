"""`accel bench`: accelerated vs baseline decoding on the task suite, in one process, side by side.

Cheap checks (numbers, task names, methods, output paths, the target directory) run before
any model is loaded, so a typo costs nothing. torch is imported only inside the command.
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

_METHOD_HELP = (
    "Decode method (repeatable). The first one is the baseline that speedups are relative to. "
    "dLLM: vanilla, fast-dllm, fast-dllm-prefix, fast-dllm-dual, fast-dllm-factor, entropy-threshold; "
    "AR: greedy, sample; an accel checkpoint adds its recipe's methods: list them with "
    "`accel bench CKPT --list-methods`. "
    "Default: the target's defaults (dLLM: vanilla + the Fast-dLLM family; AR: greedy)."
)


def command(
    target: str = typer.Argument(..., metavar="TARGET", help="builtin:dllm, builtin:ar, a local HF model directory (dLLM or "
                                           "causal LM), or an inference checkpoint from `accel export`."),
    method: Optional[List[str]] = typer.Option(None, "--method", "-m", help=_METHOD_HELP),
    task: Optional[List[str]] = typer.Option(None, "--task", "-t", help="Task of the built-in suite (repeatable): "
                                             "arith, copy, reverse, sort, insert, remove, replace, shuffle, "
                                             "pick3, or all (the short suite, default); or the long-answer suite "
                                             "(long-count, long-step, ... long-anystart) or long (the default on "
                                             "builtin:dllm-long / builtin:ar-long)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Test prompts per task (the same prompts for "
                                        "every method). Default: 32; on a CPU beyond gen-len 64, 32*64/gen-len."),
    gen_len: Optional[int] = typer.Option(None, "--gen-len", help="Tokens to generate per prompt (dLLM: a "
                                          "multiple of the block length). Default: 64 for built-in-world models, "
                                          "256 for real backbones and the long world; 512 with --prompts "
                                          "humaneval (as accel eval)."),
    block_len: BlockLen = None,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Prompts decoded together (left-padded). "
                                             "Default 32; Medusa/Hydra checkpoints: 1, the single-stream latency "
                                             "regime draft heads are for."),
    opt: Opt = None,
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the full report (rows per task "
                                             "and 'all', device, versions) as JSON here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw accuracy vs NFE (one point per method; with "
                                        "--sweep: accuracy vs tokens per forward, one curve per method) "
                                        "to this .png/.pdf/.svg (needs matplotlib)."),
    sweep: bool = typer.Option(False, "--sweep", help="Also decode every method at each value of its own knob "
                               "(fast-dllm: threshold 0.99..0.5; entropy-threshold: 0.1..2 nats; learn2pd: tau; "
                               "...) and report AUP, the d3LLM leaderboard's accuracy-under-parallelism score "
                               "(docs/long-world.md). Costs one run per sweep value."),
    compare: Optional[List[str]] = typer.Option(None, "--compare", help="Another TARGET whose default methods "
                                                "join the run as extra rows, e.g. --compare builtin:ar "
                                                "(repeatable)."),
    trust_remote_code: TrustRemoteCode = False,
    device: Device = None,
    dtype: Dtype = "auto",
    list_methods: bool = typer.Option(False, "--list-methods", help="Print the methods TARGET offers (with the "
                                      "defaults marked) and exit, without loading the model."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="Real prompts instead of the task suite (AR "
                                          "targets): mtbench (80 first turns, 8 categories), mtbench-turn2 (the "
                                          "second turns, after the target's own greedy answer to the first), "
                                          "sharegpt (held-out split), humaneval (HumanEval's 164 prompts, what "
                                          "`accel eval --tasks humaneval --chat` decodes; needs accel[eval]) "
                                          "or FILE.jsonl of {\"prompt\"[, \"category\"]}. Quality is then "
                                          "identical_to_greedy: the fraction of prompts whose output equals greedy "
                                          "decoding token for token. --limit counts prompts per category."),
):
    """Benchmark decode methods side by side: accuracy next to NFE, tokens/forward, tokens/s and speedup.

    Every method decodes the same test prompts in the same process; speedup is the tokens/s
    ratio to the FIRST method (the baseline), and each method is warmed up before timing.
    NFE counts full-model forwards per prompt, so it is the hardware-independent speed number.

    Examples:

      accel bench builtin:dllm

      accel bench builtin:dllm -m vanilla -m fast-dllm --task arith --limit 64 --json bench.json

      accel bench builtin:dllm --compare builtin:ar --plot acc_vs_nfe.png

      accel bench builtin:dllm -m vanilla -m fast-dllm --sweep --plot aup.png   (AUP over the threshold)

      accel bench ckpt/l2p     (an exported checkpoint: its recipe's methods)

      accel bench ckpt/l2p --list-methods

      accel bench ckpt/sm-medusa --prompts mtbench --json sm-medusa.json

      accel bench ckpt/sm-medusa --prompts mtbench-turn2     (MT-Bench's second turns)

      accel bench ckpt/sm-eagle3 -m greedy -m eagle3-chain --prompts humaneval --limit 16
    """
    if list_methods:
        with user_errors():
            _list_methods(target)
        return
    with user_errors():
        checked = _plan(target, method, task, limit, gen_len, block_len, batch_size, opt, json_path, plot, compare,
                        sweep, prompts)
        _run(checked, json_path, plot, trust_remote_code, device, dtype)


def _plan(target, method, task, limit, gen_len, block_len, batch_size, opt, json_path, plot, compare, sweep, prompts):
    """Every check that needs no model loaded, each once (`accel.decoding.plan`); returns the plan."""
    from accel.decoding.plan import Request, plan
    from accel.decoding.report import check_output_path, check_plot_path
    from accel.recipes.targets import describe_target

    if prompts and task:
        fail("--task selects suite tasks; with --prompts the rows are the prompt set's categories: drop --task")
    request = Request(methods=method, tasks=task, limit=limit, gen_len=gen_len, block_len=block_len,
                      batch_size=batch_size, options=parse_options(opt), sweep=sweep, prompts=prompts)
    if json_path is not None:
        check_output_path(json_path, "json")
    if plot is not None:
        check_plot_path(plot)
    main = describe_target(target)
    return plan(main, request, [describe_target(c) for c in compare or []])


def _list_methods(target: str) -> None:
    from accel.recipes.targets import method_names
    kind, offered, defaults = method_names(target)
    typer.echo(f"methods of {target} ({kind}; * = run when no --method is given, the first is the baseline):")
    w = max(len(n) for n in offered)
    for name in list(dict.fromkeys([*defaults, *offered])):
        typer.echo(f" {'*' if name in defaults else ' '} {name:<{w}}  {offered.get(name, '')}")


def _run(checked, json_path, plot, trust_remote_code, device, dtype="auto"):
    from rich.console import Console

    from accel.decoding import report as rep
    from accel.decoding.bench import measure
    from accel.recipes.targets import load_target

    quiet_libraries()  # transformers' per-load progress bars would tear through ours
    err = Console(stderr=True)
    with progress_line(err, f"loading {checked.target.spec}") as progress:
        main = load_target(checked.target, trust_remote_code, device, dtype)
        others = [load_target(c, trust_remote_code, device, dtype) for c in checked.compare]
        report = measure(checked, main, others, progress)
    # a log or a pipe is not a terminal: give the tables room rather than cutting names to "lear…"
    out = Console() if sys.stdout.isatty() else Console(width=250)
    for table in rep.report_tables(report):
        out.print(table)
    if json_path is not None:
        rep.write_json(report, json_path)
        err.print(f"wrote {json_path}")
    if plot is not None:
        rep.plot_report(report, plot)
        err.print(f"wrote {plot}")
