"""`accel data learn2pd-oracle`: the oracle labels Learn2PD's filter learns from (declared here, run by
`oracle.py`; `accel.cli.data` builds the command from this declaration)."""
from __future__ import annotations

from pathlib import Path

from accel.core.errors import UserError
from accel.recipes.data_commands import DataCommand, Option


def build_oracle(out: Path, backbone: str, prompts: str, tasks: str, n_per_task: int, gen_len: int, block_len: int,
                 batch_size: int, device: str, seed: int, trust_remote_code: bool, cache: str = "auto",
                 progress=None) -> str:
    if gen_len <= 0 or block_len <= 0 or gen_len % block_len:
        raise UserError(f"--gen-len {gen_len} must be a positive multiple of --block-len {block_len}")
    if batch_size <= 0:
        raise UserError(f"--batch-size {batch_size} must be positive")
    from accel.models.backbone import device_of, load_backbone
    from accel.recipes.learn2pd import oracle
    if cache not in oracle.CACHES:
        raise UserError(f"--cache {cache}: choose one of {', '.join(oracle.CACHES)}")
    rows = oracle.load_prompts(prompts, tasks, n_per_task, seed)
    adapter = load_backbone(backbone, trust_remote_code=trust_remote_code, device=device_of(device))
    if adapter.kind != "dllm":
        raise UserError(f"--backbone {backbone} is an AR model; Learn2PD oracle data needs a diffusion LM "
                        "(e.g. builtin:dllm)")
    oracle.generate_oracle_dataset(adapter, rows, out, gen_len=gen_len, block_len=block_len,
                                   batch_size=batch_size, source=prompts, cache=oracle.resolve_cache(adapter, cache))
    ds, meta = oracle.load_oracle_dataset(out)
    return f"oracle data: {len(ds)} steps from {meta['n_prompts']} prompts in {out}"


ORACLE = DataCommand(
    name="learn2pd-oracle", run=build_oracle,
    help="Learn2PD oracle labels: per decode step, the block's confidence vector and which predictions\n"
         "already match the teacher's own one-token-per-step answer (docs/recipes/learn2pd.md).",
    options={
        "out": Option(Path("runs/learn2pd/oracle"), "Dataset directory (resumes there if a previous run was "
                      "interrupted).", flags=("--out", "-o")),
        "backbone": Option("builtin:dllm", "dLLM teacher: builtin:dllm or a local HF model dir."),
        "prompts": Option("suite", "suite, a .jsonl file with a 'prompt' field, or an HF dataset dir (save_to_disk)."),
        "tasks": Option("all", common="tasks"),
        "n_per_task": Option(40, "Suite prompts per task; for jsonl/HF: max prompts (0 = all)."),
        "gen_len": Option(64, "Generation length (a multiple of --block-len)."),
        "block_len": Option(32, "Block length (= the filter's width)."),
        "batch_size": Option(32, "Prompts decoded together; also the shard size."),
        "device": Option("auto", common="auto_device"),
        "seed": Option(0, common="seed"),
        "trust_remote_code": Option(False, common="trust_remote_code"),
        "cache": Option("auto", "KV cache of the decodes: auto (dual on a published LLaDA / Dream, none on the "
                        "built-in teachers), none, prefix or dual (`accel train learn2pd`'s decode_cache)."),
    })
