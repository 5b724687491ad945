"""`rftkit grade` and `rftkit graders validate`: try a grader on one sample, check it before a job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from rftkit.cli.common import out, read_json
from rftkit.errors import RftkitError

app = typer.Typer(help="Check graders before spending compute on them.", no_args_is_help=True)

JUDGE_URL = typer.Option(None, "--judge-base-url", envvar="RFTKIT_JUDGE_BASE_URL",
                         help="OpenAI-compatible base URL for score_model/label_model, e.g. http://localhost:8000/v1.")
JUDGE_KEY = typer.Option(None, "--judge-api-key", envvar="RFTKIT_JUDGE_API_KEY", help="Bearer key for the judge.")
EMBEDDING = typer.Option(None, "--embedding-model", envvar="RFTKIT_EMBEDDING_MODEL",
                         help="Local model directory for text_similarity's cosine.")


def _context(grader: Path, judge_base_url: str | None, judge_api_key: str | None, embedding_model: str | None):
    from rftkit.graders import GraderContext

    return GraderContext(base_dir=grader.resolve().parent, judge_base_url=judge_base_url,
                         judge_api_key=judge_api_key, embedding_model=embedding_model)


def _sample_text(sample: str | None, sample_file: Path | None) -> str:
    if (sample is None) == (sample_file is None):
        raise RftkitError("give the sample as --sample TEXT or --sample-file FILE (one of them)")
    if sample is not None:
        return sample
    try:
        return sample_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RftkitError(f"{sample_file}: no such file") from None


def grade(
    grader: Path = typer.Option(..., "--grader", help="Grader spec (JSON), in OpenAI's or rftkit's shapes."),
    sample: Optional[str] = typer.Option(None, help="The model output to grade."),
    sample_file: Optional[Path] = typer.Option(None, help="A file holding the model output to grade."),
    item: Optional[Path] = typer.Option(None, help="The dataset row (a JSON object) the grader reads as item."),
    judge_base_url: Optional[str] = JUDGE_URL,
    judge_api_key: Optional[str] = JUDGE_KEY,
    embedding_model: Optional[str] = EMBEDDING,
) -> None:
    """Grade one sample; print {"reward", "sub_rewards", "metadata"} as OpenAI's graders/run does."""
    from rftkit.graders import build_grader
    from rftkit.types import Sample

    spec = read_json(grader, "grader")
    row = read_json(item, "item") if item else {}
    if not isinstance(row, dict):
        raise RftkitError(f"{item}: the item must be a JSON object, got {type(row).__name__}")
    text = _sample_text(sample, sample_file)
    context = _context(grader, judge_base_url, judge_api_key, embedding_model)
    with build_grader(spec, context, source=str(grader)) as scorer:
        result = scorer.grade(Sample(text), row)
    print(json.dumps({"reward": result.reward, "sub_rewards": result.sub_rewards, "metadata": result.metadata},
                     indent=2, default=str))


@app.command("validate")
def graders_validate(
    grader: Path = typer.Argument(..., help="Grader spec (JSON)."),
    judge_base_url: Optional[str] = JUDGE_URL,
    embedding_model: Optional[str] = EMBEDDING,
) -> None:
    """Check schema, formula, template variables, and that python source compiles and defines grade."""
    from rftkit.graders.validate import validate_grader

    spec = read_json(grader, "grader")
    problems = validate_grader(spec, _context(grader, judge_base_url, None, embedding_model), source=str(grader))
    for problem in problems:
        out.print(f"[red]error[/]: {escape(problem)}", highlight=False)
    if problems:
        raise typer.Exit(2)
    name = spec.get("name") or spec.get("type")
    out.print(f"[green]ok[/] {escape(str(grader))}: {escape(str(name))} ({escape(str(spec.get('type')))})",
              highlight=False)
