"""Options several commands take, declared once as typer `Annotated` aliases, so that a flag means the
same thing with the same help wherever it appears; each command still gives its own default."""
from __future__ import annotations

from typing import Annotated, List, Optional

import typer

TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help="Allow model code shipped with a checkpoint "
                                               "(LLaDA, Dream) to run. Only for directories you trust.")]
Device = Annotated[Optional[str], typer.Option("--device", help="cpu or cuda[:N] (default: cuda when available).")]
Dtype = Annotated[str, typer.Option("--dtype", help="Compute dtype of the model: auto (as saved), fp32, bf16 or "
                                     "fp16. bf16 is the GPU norm and, on CPUs with AVX512-BF16, makes a tree "
                                     "verification much cheaper than in fp32; greedy acceptance then matches "
                                     "greedy decoding only up to bf16 rounding (docs/recipes/medusa.md).")]
AutoDevice = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
BlockLen = Annotated[Optional[int], typer.Option("--block-len", help="Block length of the dLLM baseline methods "
                                                 "(default 32).")]
SuiteTasks = Annotated[str, typer.Option("--tasks", help="Comma-separated suite tasks (with --prompts suite).")]
PromptSeed = Annotated[int, typer.Option("--seed", help="Seed of the suite prompt draw.")]
Opt = Annotated[Optional[List[str]], typer.Option("--opt", help="Method option key=value, applied to every "
                                                  "selected baseline method that has it (e.g. threshold=0.8, "
                                                  "cache=prefix, temperature=0.7, seed=1).")]

FLAGS = {"limit": "--limit", "batch_size": "--batch-size", "gen_len": "--gen-len", "block_len": "--block-len",
         "json": "--json", "plot": "--plot", "prompts": "--prompts", "opt": "--opt"}
"""The flag that sets each request setting the decoding layer names in its errors."""


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """['key=value', ...] from --opt into a dict (values stay strings until a method coerces them)."""
    from accel.decoding.methods import MethodError
    out = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise MethodError(f"--opt {p!r} is not key=value (e.g. --opt threshold=0.8)")
        out[key.strip()] = value.strip()
    return out


def worded(e: BaseException) -> str:
    """A user error as one line naming the flags: the decoding layer's errors carry the setting, its value
    and the constraint (`accel.decoding.errors`); anything else says it already."""
    from accel.decoding.errors import GenLenError, OutputPathError, PromptSetTargetError, SettingError
    from accel.decoding.methods import OptionValueError, UnknownMethodError, UnusedOptionError
    if isinstance(e, SettingError):
        return f"{FLAGS[e.setting]} must be >= {e.minimum} (got {e.value})"
    if isinstance(e, GenLenError):
        g, b = e.gen_len, e.block_len
        if e.owner:
            return (f"--gen-len {g} is not a multiple of the {e.owner}'s block length {b}; "
                    f"use --gen-len {e.lower} or {e.lower + b}")
        return (f"--gen-len {g} is not a multiple of the block length {b} (method {e.method}); "
                f"use --gen-len {e.lower} or a --block-len that divides {g}")
    if isinstance(e, OutputPathError):
        return f"{FLAGS.get(e.setting, e.setting)} {e.path} {e.problem}"
    if isinstance(e, PromptSetTargetError):
        kind = "a diffusion LM" if e.kind == "dllm" else f"a {e.kind}"
        return (f"--prompts {e.prompts}: real prompt sets are scored against greedy decoding, which needs an AR "
                f"target ({e.spec} is {kind}); drop --prompts")
    if isinstance(e, OptionValueError):
        return f"--opt {e.key}={e.value}: {e.problem}"
    if isinstance(e, UnusedOptionError):
        return f"--opt {e.key}: no selected method has this option (methods: {', '.join(e.methods)})"
    if isinstance(e, UnknownMethodError):
        return f"{e} (`accel bench {e.target} --list-methods` describes them)"
    return str(e)
