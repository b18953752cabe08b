"""`accel decode`: generate from one prompt with one method and show what it cost (NFE)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import List, Optional

import typer

from accel.cli.common import fail, user_errors
from accel.cli.options import BlockLen, Device, Dtype, TrustRemoteCode


def command(
    target: str = typer.Argument(..., metavar="TARGET", help="builtin:dllm, builtin:ar, a local HF model directory, or an "
                                           "inference checkpoint from `accel export`."),
    prompt: str = typer.Option(..., "--prompt", "-p", help="User text; it is wrapped in the model's chat "
                                                          "template, e.g. 'calc 12+3-4' or 'reverse 31415'."),
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Decode method (see `accel bench --help`). "
                                         "Default: the checkpoint's exported method, else vanilla (dLLM) / "
                                         "greedy (AR)."),
    gen_len: Optional[int] = typer.Option(None, "--gen-len", help="Tokens to generate (dLLM: a multiple of the "
                                          "block length). Default: the checkpoint's, else 64 for built-in-world "
                                          "models and 256 for real backbones."),
    block_len: BlockLen = None,
    opt: Optional[List[str]] = typer.Option(None, "--opt", help="Method option key=value (e.g. threshold=0.8)."),
    trust_remote_code: TrustRemoteCode = False,
    device: Device = None,
    dtype: Dtype = "auto",
):
    """Decode one prompt and print the generation, then its NFE (full-model forwards) on stderr.

    Examples:

      accel decode builtin:dllm --prompt "reverse 31415" --method fast-dllm

      accel decode builtin:ar -p "calc 12+3-4"
    """
    with user_errors():
        from accel.decoding import bench
        from accel.decoding.methods import DEFAULT_METHODS, parse_options

        for flag, value in (("--gen-len", gen_len), ("--block-len", block_len)):
            if value is not None and value < 1:
                fail(f"{flag} must be >= 1 (got {value})")
        if not prompt.strip():
            fail("--prompt is empty; pass the text to complete, e.g. --prompt 'reverse 31415'")
        options = parse_options(opt)
        kind = bench.check_target(target)
        if kind == "checkpoint" and method:
            from accel.cli.bench import check_checkpoint_methods
            check_checkpoint_methods(target, [method])
        if kind == "checkpoint" and gen_len is not None and block_len is None:
            check_checkpoint_gen_len(target, gen_len)
        if kind != "checkpoint":
            fake = bench.Target(spec=target, adapter=SimpleNamespace(kind=kind), default_methods=DEFAULT_METHODS[kind])
            chosen = bench.select_methods(fake, [method] if method else None, options, block_len)
            if gen_len is not None:
                bench.check_gen_len(gen_len, dict(list(chosen.items())[:1]))
        _decode(target, prompt, method, gen_len, block_len, options, trust_remote_code, device, dtype)


def check_checkpoint_gen_len(target: str, gen_len: int) -> None:
    """--gen-len against the block length an exported checkpoint decodes with, before any model loads."""
    from accel.decoding.checkpoint import load_checkpoint
    from accel.recipes import get
    ckpt = load_checkpoint(target)
    try:
        spec_cls = get(ckpt.recipe).Spec
    except KeyError:
        spec_cls = None
    blk = int(ckpt.decode_defaults(spec_cls).get("block_len") or 0)
    if blk and (gen_len < 1 or gen_len % blk):
        lo = max(blk, gen_len // blk * blk)
        fail(f"--gen-len {gen_len} is not a multiple of the {ckpt.recipe} checkpoint's block length {blk}; "
             f"use --gen-len {lo} or {lo + blk}")


def _decode(target, prompt, method, gen_len, block_len, options, trust_remote_code, device, dtype="auto"):
    import time

    from accel.data.prompts import encode_prompt
    from accel.decoding import bench
    from accel.recipes.targets import load_target

    _quiet_loading()
    tgt = load_target(target, trust_remote_code=trust_remote_code, device=device, dtype=dtype)
    defaults = tgt.decode_defaults
    name = method or defaults.get("method") or tgt.default_methods[0]
    fn = bench.select_methods(tgt, [name], options, block_len)[name]
    gen_len = gen_len or bench.checkpoint_gen_len(tgt) or bench.default_gen_len(tgt.adapter)
    bench.check_gen_len(gen_len, {name: fn})
    a = tgt.adapter
    ids = encode_prompt(a.tokenizer, prompt)
    from accel.data.prompt_check import unknown_warning
    warning = unknown_warning(a.tokenizer, prompt, target)
    if warning:
        typer.secho(warning, err=True, fg=typer.colors.YELLOW)
    t0 = time.perf_counter()
    res = fn(a, [ids], gen_len)
    dt = time.perf_counter() - t0
    text = bench._texts(a, res)[0]
    n = bench.count_tokens(res.tokens[0], a.eos_ids)
    typer.echo(text)
    nfe = int(res.nfe[0])
    typer.secho(f"[{name}] nfe={nfe} tokens={n} tokens/forward={n / max(nfe, 1):.2f} time={dt:.2f}s",
                err=True, dim=True)


def _quiet_loading():
    """transformers' per-load progress bars would tear through ours (and clutter stderr)."""
    from accel.cli.quiet import quiet_libraries
    quiet_libraries()
