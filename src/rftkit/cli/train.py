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
    out_dir: Path = typer.Option(..., "--out", help="Run directory: model, metrics.jsonl, summary.json."),
    overwrite: bool = typer.Option(False, help="Write into a directory that already holds files."),
) -> None:
    """Run a fine-tuning job."""
    from rftkit.config import load_job

    spec = load_job(job)
    if spec.method.type != "supervised":
        raise RftkitError(
            f"{job}: method.type reinforcement is not available in this version",
            fix="use method.type: supervised, or upgrade rftkit",
        )
    from rftkit.train.supervised import run_supervised_job

    summary = run_supervised_job(spec, out_dir, overwrite=overwrite)
    out.print(f"done in {summary.seconds:.0f} s: model in {summary.model_dir}")


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
