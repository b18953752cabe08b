"""Options several commands take, declared once as typer `Annotated` aliases, so that a flag means the
same thing with the same help wherever it appears; each command still gives its own default."""
from __future__ import annotations

from typing import Annotated, Optional

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
