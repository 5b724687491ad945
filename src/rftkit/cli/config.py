"""`rftkit config`: every default, or a job's resolved settings."""

from __future__ import annotations

from pathlib import Path

import typer

from rftkit.cli.common import out

app = typer.Typer(help="Show the job spec: every default, or a job's resolved settings.", no_args_is_help=True)


@app.command("defaults")
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


@app.command("explain")
def config_explain(job: Path = typer.Argument(..., help="A job spec in YAML.")) -> None:
    """Print a job's settings with every default filled in and every "auto" resolved, and why
    each auto value is what it is (the model's size, the data's size: docs/auto.md)."""
    import yaml

    from rftkit.config import load_job
    from rftkit.data.rows import read_rows
    from rftkit.models.load import parameter_count_of
    from rftkit.resolved import resolve_reinforcement, resolve_supervised

    spec = load_job(job)
    rows = sum(1 for _ in read_rows(spec.training_file))
    valid_rows = sum(1 for _ in read_rows(spec.validation_file)) if spec.validation_file else 0
    parameters = parameter_count_of(spec.model)
    if spec.method.type == "reinforcement":
        resolved = resolve_reinforcement(spec, rows, parameters=parameters, valid_rows=valid_rows)
    else:
        resolved = resolve_supervised(spec, rows, parameters=parameters)
    explained = resolved.explain()
    why = explained.pop("reasons")
    size = f"{parameters:,} parameters" if parameters is not None else "a model whose size cannot be read here"
    print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# resolved for {rows} training rows, {valid_rows} validation rows and {size}:")
    print(yaml.safe_dump({"resolved": explained}, sort_keys=False), end="")
    print("# why each auto value is what it is:")
    for key, reason in why.items():
        print(f"#   {key} = {explained[key]:g}: {reason}")
