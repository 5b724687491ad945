"""`rftkit rm`: train a calibrated reward model on feedback, measure it, try it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rftkit.cli.common import out
from rftkit.errors import RftkitError

app = typer.Typer(help="Reward models: train on feedback, measure, score.", no_args_is_help=True)


def load_records(feedback: Path | None, from_db: str | None, include_ai: bool, project: str = "default"):
    """Feedback records from a JSONL file or a feedback store (exactly one of them)."""
    if (feedback is None) == (from_db is None):
        raise RftkitError("give the feedback as --feedback FILE or --from-db URL (one of them)")
    if feedback is not None:
        from rftkit.feedback.records import read_feedback_jsonl

        return read_feedback_jsonl(feedback)
    from rftkit.feedback.store import FeedbackStore

    records = FeedbackStore(from_db, project=project).records(include_ai=include_ai)
    if not records:
        raise RftkitError(f"{from_db}: no final judgements in the store", fix="collect or import feedback first")
    return records


def print_heads(metrics: dict) -> None:
    from rich.table import Table

    table = Table("head", "pairs", "pairwise acc.", "correlation", "ECE raw", "ECE calibrated",
                  title=f"held-out {metrics['split']} split, {metrics['judgements']} judgements")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for name, h in metrics["heads"].items():
        table.add_row(name, str(h["pairs"]), fmt(h["pairwise_accuracy"]), fmt(h["correlation"]), fmt(h["ece_raw"]),
                      fmt(h["ece"]))
    out.print(table)


@app.command("train")
def train(
    out_dir: Path = typer.Option(..., "--out", help="Directory for the reward model, metrics.json and report.md."),
    base: str = typer.Option(..., help="Base model: a causal LM directory (e.g. from `rftkit model init`) or hub name."),
    feedback: Optional[Path] = typer.Option(None, help="Feedback JSONL (docs/feedback.md)."),
    from_db: Optional[str] = typer.Option(None, help="A feedback store URL or SQLite path, e.g. sqlite:///feedback.db."),
    include_ai: bool = typer.Option(False, help="With --from-db: also train on final AI judgements."),
    project: str = typer.Option("default", help="With --from-db: whose feedback (the service keeps one set per project)."),
    criteria: Optional[str] = typer.Option(None, help="Comma-separated rated criteria to learn (default: all)."),
    epochs: int = typer.Option(20, min=1, help="Most epochs (early stopping may end sooner)."),
    patience: int = typer.Option(3, min=1, help="Epochs without a better held-out loss before stopping."),
    batch_size: int = typer.Option(16, min=1, help="Judgements per step."),
    learning_rate: float = typer.Option(1e-4, help="AdamW learning rate."),
    freeze_body: bool = typer.Option(False, help="Train only the heads."),
    holdout: float = typer.Option(0.3, min=0.0, max=0.9, help="Share of items held out (half calibration, half test)."),
    rating_loss: str = typer.Option("regression", help="regression or ordinal."),
    calibration: str = typer.Option("platt", help="platt, temperature, isotonic or none."),
    max_length: int = typer.Option(512, min=8, help="Longest prompt + answer, in tokens."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, help="Seeds the split, the order and the heads."),
    overwrite: bool = typer.Option(False, help="Write into a directory that already holds files."),
) -> None:
    """Train a reward model (Bradley-Terry + rating losses), calibrate it, and validate it on held-out feedback."""
    from pydantic import ValidationError

    from rftkit.config import describe_errors
    from rftkit.feedback.training import RMOptions, train_reward_model
    from rftkit.train.supervised import prepare_out_dir

    try:
        options = RMOptions(
            criteria=[c.strip() for c in criteria.split(",")] if criteria else None, epochs=epochs, patience=patience,
            batch_size=batch_size, learning_rate=learning_rate, freeze_body=freeze_body, holdout=holdout,
            rating_loss=rating_loss, calibration=calibration, max_length=max_length, device=device, seed=seed)
    except ValidationError as err:
        raise RftkitError(describe_errors(err, "rftkit rm train", root=RMOptions)) from None
    records = load_records(feedback, from_db, include_ai, project)
    prepare_out_dir(out_dir, overwrite)
    metrics = train_reward_model(records, base, out_dir, options, out.print)
    print_heads(metrics)
    out.print(f"reward model in {out_dir} ({metrics['seconds']:.0f} s); report {out_dir / 'report.md'}")


@app.command("eval")
def evaluate(
    model_dir: Path = typer.Argument(..., help="A reward model directory."),
    feedback: Path = typer.Option(..., help="Feedback JSONL to measure it on (all of it held out)."),
) -> None:
    """Measure a trained reward model on other feedback: pairwise accuracy, correlation, ECE."""
    import json

    from rftkit.feedback.dataset import build_data
    from rftkit.models.reward import load_reward_model
    from rftkit.feedback.records import read_feedback_jsonl
    from rftkit.feedback.validation import validate

    model = load_reward_model(model_dir)
    data = build_data(read_feedback_jsonl(feedback), model.heads, model.encode)
    metrics = validate(model, data, split_name=feedback.name)
    print_heads(metrics)
    print(json.dumps(metrics, indent=1))


@app.command("score")
def score(
    model_dir: Path = typer.Argument(..., help="A reward model directory."),
    prompt: str = typer.Option(..., help="The user's message."),
    answer: list[str] = typer.Option(..., help="An answer to score (repeat for several)."),
) -> None:
    """Print each head's calibrated score for one or more answers to a prompt."""
    import json

    from rftkit.models.reward import load_reward_model

    model = load_reward_model(model_dir)
    scores = model.score([[{"role": "user", "content": prompt}]] * len(answer), answer)
    for text, row in zip(answer, scores):
        print(json.dumps({"answer": text, **{k: round(v, 4) for k, v in row.items()}}))
