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
    """Print a job's settings with every default filled in and every "auto" resolved."""
    import yaml

    from rftkit.config import load_job
    from rftkit.resolved import resolve_reinforcement, resolve_supervised
    from rftkit.data.rows import read_rows

    spec = load_job(job)
    rows = sum(1 for _ in read_rows(spec.training_file))
    resolve = resolve_reinforcement if spec.method.type == "reinforcement" else resolve_supervised
    resolved = resolve(spec, rows)
    print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# resolved for {rows} training rows:")
    print(yaml.safe_dump({"resolved": resolved.explain()}, sort_keys=False), end="")
