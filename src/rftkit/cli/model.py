"""`rftkit model`: build rftkit's tiny byte-level models."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from rftkit.cli.common import out

app = typer.Typer(help="Build rftkit's tiny byte-level models.", no_args_is_help=True)


@app.command("init")
def model_init(
    out_dir: Path = typer.Option(..., "--out", help="Directory to write the model and tokenizer to."),
    size: str = typer.Option("tiny", help="tiny (~1.1M parameters) or small (~6.0M)."),
    sft_data: Optional[Path] = typer.Option(None, help="Supervised rows to warm-start on: the last turn from the assistant, or tool transcripts (every assistant turn trained, tool results masked)."),
    sft_valid: Optional[Path] = typer.Option(None, help="Held-out supervised rows: report exact-match before and after."),
    sft_steps: int = typer.Option(300, min=1, help="Warm-start steps (with --sft-data)."),
    sft_lr: float = typer.Option(3e-3, help="Warm-start learning rate."),
    sft_batch_size: int = typer.Option(32, min=1, help="Warm-start rows per step."),
    seed: int = typer.Option(0, help="Initialisation and data-order seed; the same seed gives the same model."),
    overwrite: bool = typer.Option(False, help="Write into a directory that already holds files."),
) -> None:
    """Build a tiny Llama model with a byte-level tokenizer, optionally warm-started by SFT."""
    from rftkit.models.tiny import build_tiny, parameter_count
    from rftkit.models.load import save_policy, setup_cpu
    from rftkit.train.supervised import prepare_out_dir

    prepare_out_dir(out_dir, overwrite)
    setup_cpu()
    model, tokenizer = build_tiny(size, seed)
    out.print(f"built a {size} model: {parameter_count(model):,} parameters, vocabulary {len(tokenizer)}")
    if sft_data is not None:
        warm_start(model, tokenizer, sft_data, sft_valid, steps=sft_steps, lr=sft_lr, batch_size=sft_batch_size, seed=seed)
    save_policy(model, tokenizer, out_dir)
    out.print(f"saved to {out_dir}")


def warm_start(model, tokenizer, data: Path, valid: Path | None, *, steps: int, lr: float, batch_size: int, seed: int,
               should_stop=None):
    """SFT on labelled rows; report held-out exact-match before and after when `valid` is given.
    `should_stop(step)` may end it early; returns (before, after, seconds, steps taken)."""
    from rftkit.config import Optimizer
    from rftkit.data.validate import load_examples
    from rftkit.eval.exact_match import exact_match
    from rftkit.monitor.console import progress_bar, step_reporter
    from rftkit.rollout.engine import local_engine
    from rftkit.train.sft import SFTSettings, encode_supervised, is_tool_transcript, run_sft

    train = load_examples(data, "supervised")
    held_out = load_examples(valid, "supervised") if valid else []
    longest = max(len(p.completion_ids) for p in encode_supervised(tokenizer, train + held_out, 1 << 20))
    if any(is_tool_transcript(e) for e in held_out):
        out.print("held-out rows are tool transcripts: exact-match is for single answers, so only the "
                  "held-out loss is reported")
        held_out_match = []
    else:
        held_out_match = held_out
    out.print(f"warm start: {len(train)} rows from {data}, {steps} steps")
    engine = local_engine(model, tokenizer)
    before = exact_match(engine, tokenizer, held_out_match, max_new_tokens=longest) if held_out_match else None
    settings = SFTSettings(
        total_steps=steps, batch_size=min(batch_size, len(train)), learning_rate=lr, seed=seed,
        optimizer=Optimizer(warmup_steps=min(20, steps // 10), schedule="cosine"), max_completion_tokens=longest,
    )
    started = time.perf_counter()
    with progress_bar() as progress:
        history = run_sft(model, tokenizer, train, held_out, settings, should_stop=should_stop,
                          on_step=step_reporter(progress, "sft", steps, ("train_loss", "valid_loss")))
    seconds = time.perf_counter() - started
    if before is not None:
        after = exact_match(engine, tokenizer, held_out_match, max_new_tokens=longest)
        out.print(f"held-out exact-match: {before.accuracy:.1%} before, {after.accuracy:.1%} after SFT "
                  f"({len(held_out_match)} rows, {seconds:.0f} s)")
        return before.accuracy, after.accuracy, seconds, len(history)
    return None, None, seconds, len(history)
