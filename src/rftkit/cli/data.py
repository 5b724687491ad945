"""`rftkit data`: check datasets before spending compute on them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from rftkit.cli.common import out, read_json
from rftkit.errors import RftkitError

app = typer.Typer(help="Check datasets before spending compute on them.", no_args_is_help=True)


@app.command("validate")
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
    required = item_fields(read_json(grader, "grader")) if grader else set()
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
