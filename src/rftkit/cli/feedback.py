"""`rftkit feedback`: comparison items, judgements and agreement in a feedback store, without the server.

Every command opens the store at `--db` (default: SQLite at runs/feedback.db). The service's
own database holds each project's feedback too: `--db sqlite:///DATA_DIR/rftkit.db --project P`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from rftkit.cli.common import out, read_json
from rftkit.cli.graders import JUDGE_KEY, JUDGE_URL, _context
from rftkit.errors import RftkitError

app = typer.Typer(help="Human feedback: add items, review agreement, export for `rftkit rm train`.",
                  no_args_is_help=True)

DEFAULT_DB = "sqlite:///runs/feedback.db"
DB = typer.Option(DEFAULT_DB, "--db", envvar="RFTKIT_FEEDBACK_DB",
                  help="Feedback store: a database URL or SQLite path (the service's: sqlite:///DATA_DIR/rftkit.db).")
PROJECT = typer.Option("default", "--project", help="Whose feedback: the service keeps one set per API key's project.")


def open_store(db: str, project: str):
    """The store at `db`; a SQLite file's folder is made when missing."""
    from rftkit.feedback.store import FeedbackStore

    path = db.removeprefix("sqlite:///") if db.startswith("sqlite:///") or "://" not in db else None
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return FeedbackStore(db, project=project)


def _preview(prompt: list[dict], width: int = 60) -> str:
    text = " ".join(str(m.get("content", "")) for m in prompt if m.get("role") == "user").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _numbers(text: str) -> list[int]:
    try:
        return [int(n) for n in text.split(",")]
    except ValueError:
        raise RftkitError(f"--lines {text!r}: give line numbers separated by commas, e.g. 3,4") from None


@app.command("add")
def add(
    samples: Optional[Path] = typer.Option(None, help="A run's samples.jsonl: one item per prompt's distinct answers."),
    items: Optional[Path] = typer.Option(None, help='An items JSONL: {"item_id"?, "prompt", "answers"} per line.'),
    lines: Optional[str] = typer.Option(None, help="With --samples: exactly these sample lines as one item, e.g. 3,4."),
    split: Optional[str] = typer.Option(None, help="With --samples: only this split (train, valid, baseline, final)."),
    step: Optional[int] = typer.Option(None, help="With --samples: only this step."),
    db: str = DB,
    project: str = PROJECT,
) -> None:
    """Add comparison items from a run's samples (again: only new ones) or from an items file."""
    from rftkit.feedback.samples import item_from_sample_lines, items_from_samples, read_items_jsonl

    if (samples is None) == (items is None):
        raise RftkitError("give the items as --samples FILE or --items FILE (one of them)")
    if items is not None:
        found, again = read_items_jsonl(items), False  # an item id given twice is a mistake in the file
    elif lines:
        found, again = [item_from_sample_lines(samples, _numbers(lines))], True
    else:
        found, again = items_from_samples(samples, split=split, step=step), True  # a run's samples grow
    added = open_store(db, project).add_items(found, skip_existing=again)
    out.print(f"added {len(added)} item(s) to {escape(db)}"
              + (f"; {len(found) - len(added)} already there" if len(found) > len(added) else ""))


@app.command("list")
def list_items(
    pending_for: Optional[str] = typer.Option(None, help="Only items this reviewer has not judged yet."),
    limit: int = typer.Option(20, min=1, help="Most items to show."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per item on stdout."),
    db: str = DB,
    project: str = PROJECT,
) -> None:
    """List items in the order added, with how many final judgements each has."""
    from rich.table import Table

    store = open_store(db, project)
    found = store.items(pending_for=pending_for, limit=limit)
    if as_json:
        for item in found:
            print(json.dumps({"item_id": item.item_id, "prompt": item.prompt, "answers": [a.text for a in item.answers],
                              "source": item.source}, ensure_ascii=False))
        return
    counts: dict[str, int] = {}
    for judgement in store.judgements():
        counts[judgement.item_id] = counts.get(judgement.item_id, 0) + 1
    table = Table("item", "answers", "judgements", "prompt", title=f"{len(found)} item(s)")
    for item in found:
        table.add_row(escape(item.item_id), str(len(item.answers)), str(counts.get(item.item_id, 0)),
                      escape(_preview(item.prompt)))
    out.print(table)


@app.command("prelabel")
def prelabel_items(
    grader: Path = typer.Option(..., "--grader", help="The judge: a score_model or label_model grader spec (JSON)."),
    criterion: Optional[str] = typer.Option(None, help="Also rate this criterion 1-5 from the judge's score."),
    unsafe_below: Optional[float] = typer.Option(None, min=0.0, max=1.0,
                                                 help="Flag answers the judge scores under this (0-1) unsafe."),
    limit: int = typer.Option(1000, min=1, help="Most items to pre-label (those this judge has not labelled yet)."),
    judge_base_url: Optional[str] = JUDGE_URL,
    judge_api_key: Optional[str] = JUDGE_KEY,
    db: str = DB,
    project: str = PROJECT,
) -> None:
    """Let an AI judge pre-label items; people then confirm or correct them (pre-labels never
    train a reward model until a person has)."""
    from rftkit.feedback.prelabel import prelabel

    spec = read_json(grader, "grader")
    context = _context(grader, judge_base_url, judge_api_key, None)
    result = prelabel(open_store(db, project), spec, criterion=criterion, unsafe_below=unsafe_below,
                      context=context, limit=limit)
    out.print(f"pre-labelled {len(result.judgement_ids)} item(s)"
              + (f"; {len(result.skipped)} skipped (the judge failed on them)" if result.skipped else ""))
    for item_id, why in list(result.skipped.items())[:10]:
        out.print(f"  {escape(item_id)}: {escape(why)}")


@app.command("export")
def export(
    out_file: Path = typer.Argument(..., help="Feedback JSONL to write (what `rftkit rm train --feedback` reads)."),
    include_ai: bool = typer.Option(False, help="Also final AI judgements (pre-labels never are)."),
    db: str = DB,
    project: str = PROJECT,
) -> None:
    """Write every final judgement, with its item, one JSON object per line."""
    count = open_store(db, project).export_jsonl(out_file, include_ai=include_ai)
    out.print(f"wrote {count} judgement(s) to {escape(str(out_file))}")


@app.command("import")
def import_feedback(
    file: Path = typer.Argument(..., help="Feedback JSONL (docs/feedback.md); all lines or none are imported."),
    db: str = DB,
    project: str = PROJECT,
) -> None:
    """Import judgements (and the items they bring); every bad line is named."""
    count = open_store(db, project).import_jsonl(file)
    out.print(f"imported {count} judgement(s) into {escape(db)}")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def agreement_table(report: dict):
    """One row per comparison (people, judge vs people) and field."""
    from rich.table import Table

    table = Table("between", "field", "pairs", "agreement", "kappa", "mean abs. diff", title="agreement")
    for between, key in (("reviewers", "reviewers"), ("judge vs human", "judge_vs_human")):
        part = report[key]
        table.add_row(between, "preferred", _fmt(part["pairs"]), _fmt(part["preference_agreement"]),
                      _fmt(part["preference_kappa"]), "")
        table.add_row(between, "unsafe", "", _fmt(part["unsafe_agreement"]), _fmt(part["unsafe_kappa"]), "")
        for criterion, figures in part["ratings"].items():
            table.add_row(between, escape(criterion), _fmt(figures["pairs"]), _fmt(figures["exact"]),
                          _fmt(figures["kappa"]), _fmt(figures["mean_abs_diff"]))
    return table


@app.command("agreement")
def agreement(
    as_json: bool = typer.Option(False, "--json", help="The whole report as JSON on stdout."),
    db: str = DB,
    project: str = PROJECT,
) -> None:
    """Agreement between reviewers and between the AI judge and people (percent and Cohen's kappa)."""
    report = open_store(db, project).agreement()
    if as_json:
        print(json.dumps(report, indent=1))
        return
    out.print(agreement_table(report))
    judge = report["judge_vs_human"]
    counts = ", ".join(f"{escape(name)} {n}" for name, n in report["reviewer_counts"].items()) or "none"
    out.print(f"judgements per reviewer: {counts}; pre-labels confirmed unchanged {judge['confirmed_unchanged']}, "
              f"corrected {judge['corrected']}")


@app.command("criteria")
def criteria(
    add: Optional[str] = typer.Option(None, help="Add (or describe again) this criterion, e.g. helpfulness."),
    description: str = typer.Option("", help="With --add: what reviewers rate."),
    db: str = DB,
    project: str = PROJECT,
) -> None:
    """List the criteria answers are rated on (1-5), or add one."""
    store = open_store(db, project)
    if add:
        store.add_criterion(add, description)
    for name, text in store.describe_criteria().items():
        print(f"{name}\t{text}" if text else name)
