"""The `rftkit` command.

Every command exits 0 on success, 2 with a one-line reason (no traceback) on a problem the
user can fix (`RftkitError`, bad arguments), and keeps the traceback for anything else,
which is a bug.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from rich.markup import escape

from rftkit.errors import RftkitError
from rftkit.monitor.console import console

app = typer.Typer(
    help="Reinforcement fine-tuning for language models, on your own hardware.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Check datasets before spending compute on them.", no_args_is_help=True)
model_app = typer.Typer(help="Build rftkit's tiny byte-level models.", no_args_is_help=True)
config_app = typer.Typer(help="Show the job spec: every default, or a job's resolved settings.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(config_app, name="config")

out = console  # progress and logs go to stderr; results meant for pipes go to stdout via print


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RftkitError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise RftkitError(f"{path}:{err.lineno}: invalid JSON in the {what}: {err.msg}") from None


# ----------------------------------------------------------------------------- data


@data_app.command("validate")
def data_validate(
    file: Path = typer.Argument(..., help="JSONL, parquet, or a saved Hugging Face dataset directory."),
    purpose: Optional[str] = typer.Option(
        None, "--for", help="reinforcement (last turn from the user) or supervised (last turn from the assistant)."
    ),
    grader: Optional[Path] = typer.Option(None, help="Grader JSON: every row must hold the item fields it reads."),
    valid: Optional[Path] = typer.Option(None, help="A validation file: warn about prompts it shares with FILE."),
    model: Optional[str] = typer.Option(None, help="Model directory whose tokenizer counts prompt tokens."),
    max_prompt_tokens: Optional[int] = typer.Option(None, help="Longest prompt allowed (default: the model's context)."),
) -> None:
    """Report every problem in a dataset with its line, field and fix. Exit 2 on errors."""
    from rftkit.data.validate import check_dataset
    from rftkit.graders.templates import item_fields

    if purpose not in (None, "reinforcement", "supervised"):
        raise RftkitError(f"--for {purpose!r}: unknown purpose", fix="use reinforcement or supervised")
    required = item_fields(_read_json(grader, "grader")) if grader else set()
    counter, limit = _prompt_counter(model, max_prompt_tokens)
    other = check_dataset(valid, purpose) if valid else None
    checked = check_dataset(
        file, purpose, required_fields=required, count_prompt_tokens=counter, max_prompt_tokens=limit,
        compare_with=other,
    )
    for problem in checked.problems:
        style = "red" if problem.severity == "error" else "yellow"
        out.print(f"[{style}]{problem.severity}[/]: {escape(str(problem))}", markup=True, highlight=False, soft_wrap=True)
    usable = len(checked.examples)
    verdict = "[red]invalid[/]" if checked.errors else "[green]ok[/]"
    out.print(
        f"{verdict} {escape(str(file))}: {checked.rows} rows, {usable} usable, "
        f"{len(checked.errors)} errors, {len(checked.warnings)} warnings",
        highlight=False,
    )
    if checked.errors:
        raise typer.Exit(2)


def _prompt_counter(model: str | None, max_prompt_tokens: int | None):
    if model is None:
        if max_prompt_tokens is not None:
            raise RftkitError("--max-prompt-tokens needs --model, whose tokenizer counts the tokens")
        return None, None
    from transformers import AutoConfig

    from rftkit.data.chat import encode_prompt
    from rftkit.models.load import load_tokenizer

    tokenizer = load_tokenizer(model)
    if max_prompt_tokens is None:
        max_prompt_tokens = AutoConfig.from_pretrained(model).max_position_embeddings
    return (lambda example: len(encode_prompt(tokenizer, example))), max_prompt_tokens


# ----------------------------------------------------------------------------- model


@model_app.command("init")
def model_init(
    out_dir: Path = typer.Option(..., "--out", help="Directory to write the model and tokenizer to."),
    size: str = typer.Option("tiny", help="tiny (~1.1M parameters) or small (~6.0M)."),
    sft_data: Optional[Path] = typer.Option(None, help="Supervised rows to warm-start on (last turn from the assistant)."),
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


def warm_start(model, tokenizer, data: Path, valid: Path | None, *, steps: int, lr: float, batch_size: int, seed: int):
    """SFT on labelled rows; report held-out exact-match before and after when `valid` is given."""
    from rftkit.config import Optimizer
    from rftkit.data.validate import load_examples
    from rftkit.eval.exact_match import exact_match
    from rftkit.monitor.console import progress_bar, step_reporter
    from rftkit.train.sft import SFTSettings, run_sft

    train = load_examples(data, "supervised")
    held_out = load_examples(valid, "supervised") if valid else []
    longest = max(len(tokenizer(e.target or "")["input_ids"]) for e in train + held_out) + 1
    out.print(f"warm start: {len(train)} rows from {data}, {steps} steps")
    before = exact_match(model, tokenizer, held_out, max_new_tokens=longest) if held_out else None
    settings = SFTSettings(
        total_steps=steps, batch_size=min(batch_size, len(train)), learning_rate=lr, seed=seed,
        optimizer=Optimizer(warmup_steps=min(20, steps // 10), schedule="cosine"), max_completion_tokens=longest,
    )
    started = time.perf_counter()
    with progress_bar() as progress:
        run_sft(model, tokenizer, train, held_out, settings,
                on_step=step_reporter(progress, "sft", steps, ("train_loss", "valid_loss")))
    seconds = time.perf_counter() - started
    if before is not None:
        after = exact_match(model, tokenizer, held_out, max_new_tokens=longest)
        out.print(f"held-out exact-match: {before.accuracy:.1%} before, {after.accuracy:.1%} after SFT "
                  f"({len(held_out)} rows, {seconds:.0f} s)")
        return before.accuracy, after.accuracy, seconds
    return None, None, seconds


# ----------------------------------------------------------------------------- config


@config_app.command("defaults")
def config_defaults(
    markdown: bool = typer.Option(False, help="Print the Markdown table of docs/config.md instead."),
) -> None:
    """Every setting of the job spec, with its default and meaning."""
    from rich.table import Table

    from rftkit.config import defaults_markdown, iter_fields

    if markdown:
        print(defaults_markdown(), end="")
        return
    table = Table("key", "default", "meaning", show_lines=False)
    for path, default, description in iter_fields():
        table.add_row(path, str(default), description)
    out.print(table)


@config_app.command("explain")
def config_explain(job: Path = typer.Argument(..., help="A job spec in YAML.")) -> None:
    """Print a job's settings with every default filled in and every "auto" resolved."""
    import yaml

    from rftkit.config import load_job, resolve_reinforcement, resolve_supervised
    from rftkit.data.rows import read_rows

    spec = load_job(job)
    rows = sum(1 for _ in read_rows(spec.training_file))
    resolve = resolve_reinforcement if spec.method.type == "reinforcement" else resolve_supervised
    resolved = resolve(spec, rows)
    print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# resolved for {rows} training rows:")
    print(yaml.safe_dump({"resolved": resolved.__dict__}, sort_keys=False), end="")


# ----------------------------------------------------------------------------- train


@app.command()
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


# ----------------------------------------------------------------------------- demo


@app.command()
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


# ----------------------------------------------------------------------------- entry point


def main() -> None:
    try:
        app()
    except RftkitError as err:
        console.print(f"[red]error[/]: {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
