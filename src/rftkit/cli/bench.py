"""`rftkit bench`: rftkit's GRPO against TRL's GRPOTrainer, side by side (bench/grpo_vs_trl.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from rftkit.errors import RftkitError

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "grpo_vs_trl.py"


def bench(
    quick: bool = typer.Option(False, help="The S preset, full fine-tuning, beta 0, 3 repeats: a few minutes."),
    presets: str = typer.Option("S", help="Comma-separated presets: S (~1M parameters), M (~6M)."),
    variants: str = typer.Option("full", help="Comma-separated of full, full-kl, lora, lora-kl; or all."),
    repeats: int = typer.Option(3, min=1, help="Runs per side and cell, alternating which side goes first."),
    steps: int = typer.Option(40, min=2, help="Training steps per run."),
    threads: int = typer.Option(0, min=0, help="torch threads of each side (OMP_NUM_THREADS); 0: one per core."),
    nproc: str = typer.Option("1", help="Data-parallel processes to time both trainers at: 1, or 1,2 (rftkit's "
                              "ranks; TRL under accelerate launch; the threads shared out)."),
    asynchronous: bool = typer.Option(False, "--async", help="Also time rftkit with asynchronous rollouts (max_staleness 1)."),
    work: Path = typer.Option(Path("runs/bench"), help="Prepared models, runs and results.json."),
    write: Path = typer.Option(None, help="Also write the results table into this markdown file (BENCHMARKS.md)."),
) -> None:
    """Time rftkit against TRL on the same model, data, reward and settings, after checking that
    both compute the same loss; print each figure with its rftkit/TRL ratio."""
    if not SCRIPT.exists():
        raise RftkitError("rftkit bench runs from a source checkout (it needs bench/grpo_vs_trl.py)",
                          fix="git clone the rftkit repository and `pip install -e .[bench]` there")
    try:
        import trl  # noqa: F401
    except ImportError:
        raise RftkitError("rftkit bench needs TRL", fix="pip install -e '.[bench]'") from None
    args = ["--presets", presets, "--variants", variants, "--repeats", str(repeats), "--steps", str(steps),
            "--work", str(work), "--nproc", nproc] + (["--async"] if asynchronous else []) + (["--threads", str(threads)] if threads else []) + (["--quick"] if quick else []) + (["--write", str(write)] if write else [])
    raise typer.Exit(subprocess.call([sys.executable, str(SCRIPT), *args]))
