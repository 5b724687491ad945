"""`rftkit train` and `rftkit demo`."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from rftkit.cli.common import out
from rftkit.cli.model import warm_start
from rftkit.errors import RftkitError


def train(
    job: Path = typer.Argument(..., help="A job spec in YAML (see `rftkit config defaults`)."),
    out_dir: Path = typer.Option(..., "--out", help="Run directory: model, metrics, samples, checkpoints, report."),
    resume: bool = typer.Option(False, help="Continue from the newest checkpoint in --out (reinforcement)."),
    force: bool = typer.Option(False, help="Train even when the baseline check finds pass@k = 0."),
    overwrite: bool = typer.Option(False, help="Write into a directory that already holds files."),
) -> None:
    """Run a fine-tuning job: supervised, or reinforcement with baseline check, checkpoints and report."""
    from rftkit.config import load_job

    spec = load_job(job)
    if spec.method.type == "supervised":
        if resume:
            raise RftkitError("--resume applies to reinforcement jobs", fix="rerun the supervised job with --overwrite")
        from rftkit.train.supervised import run_supervised_job

        summary = run_supervised_job(spec, out_dir, overwrite=overwrite)
        out.print(f"done in {summary.seconds:.0f} s: model in {summary.model_dir}")
        return
    from rftkit.train.rl_job import run_reinforcement_job

    summary = run_reinforcement_job(spec, out_dir, resume=resume, force=force, overwrite=overwrite,
                                    base_dir=job.resolve().parent)
    print_rl_summary(summary)
    if summary.status == "paused":
        raise typer.Exit(3)


def print_rl_summary(summary) -> None:
    """Baseline -> final table and throughput, after a reinforcement run."""
    from rich.table import Table

    if summary.baseline or summary.final:
        table = Table("", "pass@1", "pass@k", "greedy", "mean reward", title="held-out evaluation")
        for name, figures in (("baseline", summary.baseline), ("final", summary.final)):
            if figures:
                greedy = figures.get("greedy_pass")
                table.add_row(name, f"{figures['pass_at_1']:.1%}", f"{figures['pass_at_k']:.1%} (k={figures['k']})",
                              "" if greedy is None else f"{greedy:.1%}", f"{figures['reward_mean']:.3f}")
        out.print(table)
    out.print(f"{summary.status}: {summary.steps}/{summary.total_steps} steps in {summary.seconds:.0f} s "
              f"({summary.seconds_per_step:.2f} s/step, {summary.samples_per_s:.0f} samples/s)"
              + (f"; model in {summary.model_dir}" if summary.model_dir else "")
              + (f"; report {summary.report}" if summary.report else ""))


def demo(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="Where the demo writes data and models."),
    sft_steps: int = typer.Option(600, min=1, help="Warm-start steps."),
    seed: int = typer.Option(0, help="Seed for data, model and training."),
) -> None:
    """Train the built-in addition task from scratch and show the improvement."""
    from rftkit.data.builtin import write_addition
    from rftkit.data.validate import check_dataset
    from rftkit.models.load import save_policy, setup_cpu
    from rftkit.models.tiny import build_tiny, parameter_count

    started = time.perf_counter()
    setup_cpu()
    files = write_addition(out_dir / "data", seed=seed)
    out.print(f"[bold]1. data[/]: addition task written to {out_dir / 'data'}")
    for name in ("sft", "sft_valid"):
        checked = check_dataset(files[name], "supervised")
        if checked.errors:
            raise RftkitError(f"{files[name]}: {checked.errors[0]}")
        out.print(f"   {files[name].name}: {len(checked.examples)} rows valid")
    model, tokenizer = build_tiny("tiny", seed)
    out.print(f"[bold]2. model[/]: tiny Llama, {parameter_count(model):,} parameters, byte-level tokenizer")
    out.print("[bold]3. supervised warm start[/]")
    before, after, seconds = warm_start(
        model, tokenizer, files["sft"], files["sft_valid"], steps=sft_steps, lr=3e-3, batch_size=32, seed=seed
    )
    save_policy(model, tokenizer, out_dir / "sft")
    out.print(f"[bold]result[/]: held-out exact-match {before:.1%} -> {after:.1%} "
              f"after {sft_steps} SFT steps ({seconds:.0f} s); model in {out_dir / 'sft'}; "
              f"total {time.perf_counter() - started:.0f} s")
