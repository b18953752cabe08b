"""`accel slurm`: render, submit and inspect SLURM batch jobs for any recipe.

Thin on purpose: validation, rendering and submission live in `accel.trainers.slurm`
(imported lazily, no torch). Config keys are checked before anything is rendered, so a typo
fails here, not after an hour in the queue.
"""
from __future__ import annotations

from typing import List, Optional

import typer

from accel.cli.common import PlainUsage, user_errors
from accel.recipes import lookup

app = typer.Typer(help="Run recipes as SLURM batch jobs: srun + torchrun, preemption-safe (requeue + resume).",
                  no_args_is_help=True)

_OVERRIDES = typer.Argument(None, metavar="KEY=VALUE", help="Config overrides key=value (dotted for sections), e.g. max_steps=1000.",
                            show_default=False)


def _spec(recipe, overrides, nodes, gpus_per_node, cpus_per_task, time, partition, job_name, output, config,
          sbatch):
    from accel.trainers import slurm
    entry = lookup(recipe)
    spec = slurm.prepare(entry, output=output, config=entry.resolve_config(config), overrides=overrides or [], nodes=nodes,
                         gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task, time=time,
                         partition=partition, job_name=job_name, sbatch_args=list(sbatch or []))
    if spec.resume == "never":
        typer.secho("warning: resume=never: a requeued or resubmitted job restarts from step 0", err=True,
                    fg=typer.colors.YELLOW)
    return spec


RecipeArg = typer.Argument(..., metavar="RECIPE", help="Recipe name (see `accel train --help` / `accel distill --help`).")
NodesOpt = typer.Option(1, "--nodes", help="Nodes; one srun task (a torchrun) per node.")
GpusOpt = typer.Option(0, "--gpus-per-node", help="GPUs per node = worker processes per node (0: one CPU worker).")
CpusOpt = typer.Option(None, "--cpus-per-task", help="CPUs for each node's torchrun (default: one per worker).",
                       show_default=False)
TimeOpt = typer.Option("04:00:00", "--time", help="Time limit (SLURM format: 30, 02:00:00, 1-12:00:00).")
PartOpt = typer.Option(None, "--partition", help="Partition (default: the cluster's default).", show_default=False)
NameOpt = typer.Option(None, "--job-name", help="Job name (default: accel-RECIPE).", show_default=False)
OutOpt = typer.Option(None, "--output", help="Run directory (script, logs, checkpoints) (default: the config's "
                      "output_dir). Reusing one resumes it.", show_default=False)
ConfOpt = typer.Option(None, "--config", help="Recipe YAML, or a shipped config's name (defaults < YAML < key=value).",
                       show_default=False)
SbatchOpt = typer.Option(None, "--sbatch", help="Extra sbatch option, repeatable: --sbatch=--account=proj.",
                         show_default=False)


@app.command(cls=PlainUsage)
def render(recipe: str = RecipeArg, overrides: Optional[List[str]] = _OVERRIDES, nodes: int = NodesOpt,
           gpus_per_node: int = GpusOpt, cpus_per_task: Optional[int] = CpusOpt, time: str = TimeOpt,
           partition: Optional[str] = PartOpt, job_name: Optional[str] = NameOpt, output: Optional[str] = OutOpt,
           config: Optional[str] = ConfOpt, sbatch: Optional[List[str]] = SbatchOpt):
    """Print the sbatch script for RECIPE (validated first); `submit` writes and submits the same one."""
    with user_errors():
        from accel.trainers import slurm
        spec = _spec(recipe, overrides, nodes, gpus_per_node, cpus_per_task, time, partition, job_name, output,
                     config, sbatch)
        typer.echo(slurm.render(spec), nl=False)


@app.command(cls=PlainUsage)
def submit(recipe: str = RecipeArg, overrides: Optional[List[str]] = _OVERRIDES, nodes: int = NodesOpt,
           gpus_per_node: int = GpusOpt, cpus_per_task: Optional[int] = CpusOpt, time: str = TimeOpt,
           partition: Optional[str] = PartOpt, job_name: Optional[str] = NameOpt, output: Optional[str] = OutOpt,
           config: Optional[str] = ConfOpt, sbatch: Optional[List[str]] = SbatchOpt,
           allow_concurrent: bool = typer.Option(False, "--allow-concurrent",
                                                 help="Submit even if an earlier job of this run dir is active.")):
    """Write RUN/slurm.sbatch and sbatch it; prints the job id. Resubmitting a run dir resumes it."""
    with user_errors():
        from accel.trainers import slurm
        spec = _spec(recipe, overrides, nodes, gpus_per_node, cpus_per_task, time, partition, job_name, output,
                     config, sbatch)
        job_id = slurm.submit(spec, allow_concurrent=allow_concurrent)
        typer.echo(job_id)
        typer.secho(f"submitted job {job_id}: log {spec.output}/slurm-{job_id}.out; "
                    f"`accel slurm status {spec.output}`", err=True)


@app.command(cls=PlainUsage)
def status(run_dir: str = typer.Argument(..., metavar="RUN", help="Run directory of a submitted job (its --output).")):
    """Job id and state of a run dir's last submission, restarts, newest checkpoint and last logged step."""
    with user_errors():
        from accel.trainers import slurm
        info = slurm.status(run_dir)
        if info["job_id"] is None:
            typer.echo(f"{info['run_dir']}: never submitted with `accel slurm submit`")
        else:
            extra = f", {info['restarts']} restart(s)" if info.get("restarts") else ""
            typer.echo(f"job {info['job_id']}: {info['state']}{extra} ({info['submissions']} submission(s))")
        typer.echo(f"checkpoint: {info['checkpoint'] or 'none yet'}")
        typer.echo(f"last logged step: {info['last_step'] if info['last_step'] is not None else 'none yet'}")
