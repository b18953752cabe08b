"""`accel decode`: generate from one prompt with one method and show what it cost (NFE)."""
from __future__ import annotations

from typing import Optional

import typer

from accel.cli.common import fail, user_errors
from accel.cli.options import BlockLen, Device, Dtype, Opt, TrustRemoteCode, parse_options
from accel.cli.quiet import quiet_libraries


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
    opt: Opt = None,
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
        from accel.decoding.plan import Request, plan
        from accel.recipes.targets import describe_target

        if not prompt.strip():
            fail("--prompt is empty; pass the text to complete, e.g. --prompt 'reverse 31415'")
        request = Request(methods=[method] if method else None, gen_len=gen_len, block_len=block_len,
                          options=parse_options(opt))
        checked = plan(describe_target(target), request, single=True)
        _decode(checked, prompt, trust_remote_code, device, dtype)


def _decode(checked, prompt, trust_remote_code, device, dtype="auto"):
    """Loads the planned target and decodes `prompt` once, the way `accel bench` decodes and counts."""
    from accel.data.prompt_check import unknown_warning
    from accel.data.prompts import encode_prompt
    from accel.decoding.plan import decode_method
    from accel.decoding.timing import decode_one
    from accel.recipes.targets import load_target

    quiet_libraries()  # transformers' per-load progress bars would clutter stderr
    tgt = load_target(checked.target, trust_remote_code=trust_remote_code, device=device, dtype=dtype)
    name, fn, gen_len = decode_method(checked, tgt)
    a = tgt.adapter
    ids = encode_prompt(a.tokenizer, prompt)
    warning = unknown_warning(a.tokenizer, prompt, tgt.spec)
    if warning:
        typer.secho(warning, err=True, fg=typer.colors.YELLOW)
    out = decode_one(a, fn, ids, gen_len)
    typer.echo(out["text"])
    n, nfe = out["tokens"], out["nfe"]
    typer.secho(f"[{name}] nfe={nfe} tokens={n} tokens/forward={n / max(nfe, 1):.2f} time={out['seconds']:.2f}s",
                err=True, dim=True)
