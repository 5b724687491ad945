"""Live progress on the terminal (rich): a bar with step counts, ETA and the latest metrics."""

from __future__ import annotations

from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# soft_wrap: long messages (paths, fixes) stay on one line, so logs and tests can grep them
console = Console(stderr=True, soft_wrap=True)


def progress_bar(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
    )


def format_metrics(row: dict, keys: tuple[str, ...]) -> str:
    """`loss 0.512  valid 0.601` from the keys of `row` that are present."""
    parts = []
    for key in keys:
        value = row.get(key)
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        elif value is not None:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


def step_reporter(
    progress: Progress, description: str, total: int, keys: tuple[str, ...], completed: int = 0
) -> Callable[[dict], None]:
    """A callback for training loops: advance one step and show the chosen metrics."""
    task = progress.add_task(description, total=total, info="", completed=completed)
    shown: dict = {}

    def report(row: dict) -> None:
        shown.update({k: row[k] for k in keys if k in row})
        progress.update(task, advance=1, info=format_metrics(shown, keys))

    return report
