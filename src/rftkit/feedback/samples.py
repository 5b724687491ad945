"""Comparison items from what a run sampled (its samples.jsonl), or from an uploaded file.

A run's samples.jsonl has one row per sample: step, split, the dataset line, the prompt and
the completion. The samples drawn for one prompt in one step are a natural comparison:

    items = items_from_samples("runs/x/samples.jsonl", split="train")    # every group
    item = item_from_sample_lines("runs/x/samples.jsonl", [12, 13])      # exactly these rows

Each answer keeps `sample_ref` = "FILE:LINE", so a judgement can be traced to its sample.
An uploaded items file holds {"item_id"?, "prompt", "answers"} per line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rftkit.errors import RftkitError
from rftkit.feedback.records import (Answer, AnswerField, ComparisonItem, answers_of, check_answers, default_item_id,
                                     raise_problems, read_utf8, user_prompt, validation_problems)


def _sample_rows(path: Path) -> dict[int, dict]:
    lines = read_utf8(path, fix="give a run's samples.jsonl").splitlines()
    rows = {}
    for number, raw in enumerate(lines, start=1):
        try:
            row = json.loads(raw)
        except ValueError:
            continue  # a line cut short by a kill
        if isinstance(row, dict) and "completion" in row and "prompt" in row:
            rows[number] = row
    return rows


def items_from_samples(path: str | Path, *, split: str | None = None, step: int | None = None,
                       min_answers: int = 2, max_answers: int = 4, prefix: str | None = None) -> list[ComparisonItem]:
    """One item per (step, split, dataset line) group with at least `min_answers` distinct
    completions (identical answers are not worth comparing); at most `max_answers` each.
    Item ids are `PREFIX/SPLIT/STEP/LINE`, the prefix by default the name of the folder of the file (the run)."""
    path = Path(path)
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    for number, row in _sample_rows(path).items():
        if (split is None or row.get("split") == split) and (step is None or row.get("step") == step):
            groups.setdefault((row.get("step"), row.get("split"), row.get("line")), []).append((number, row))
    items = []
    for (row_step, row_split, line), rows in groups.items():
        answers, seen = [], set()
        for number, row in rows:
            if row["completion"] not in seen and len(answers) < max_answers:
                seen.add(row["completion"])
                answers.append(Answer(row["completion"], f"{path}:{number}"))
        if len(answers) >= min_answers:
            item_id = f"{prefix or path.resolve().parent.name}/{row_split}/{row_step}/{line}"
            items.append(ComparisonItem(item_id, rows[0][1]["prompt"], answers, str(path)))
    return items


def item_from_sample_lines(path: str | Path, lines: list[int], item_id: str | None = None,
                           prefix: str | None = None) -> ComparisonItem:
    """An item from chosen rows of a samples.jsonl (1-based line numbers), which must answer
    the same prompt. Unknown lines are errors that name them."""
    path = Path(path)
    rows = _sample_rows(path)
    unknown = [n for n in lines if n not in rows]
    if unknown:
        raise RftkitError(f"{path}: unknown sample line(s) {', '.join(map(str, unknown))} "
                          f"(the file has sample rows at lines 1-{max(rows, default=0)})")
    if len(lines) < 2:
        raise RftkitError("give at least 2 sample lines to compare")
    prompts = {json.dumps(rows[n]["prompt"], sort_keys=True) for n in lines}
    if len(prompts) > 1:
        raise RftkitError(f"{path}: lines {', '.join(map(str, lines))} answer different prompts",
                          fix="compare samples of the same prompt")
    answers = [Answer(rows[n]["completion"], f"{path}:{n}") for n in lines]
    return ComparisonItem(item_id or f"{prefix or path.resolve().parent.name}/lines/{'-'.join(map(str, lines))}",
                          rows[lines[0]]["prompt"], answers, str(path))


class ItemLine(BaseModel):
    """One line of an uploaded items file."""

    model_config = ConfigDict(extra="ignore")  # a feedback file's lines are items files too
    item_id: str | None = None
    prompt: str | list[dict[str, Any]]
    answers: list[AnswerField]


def item_from_row(row: Any, source: str) -> tuple[ComparisonItem | None, list[str]]:
    """(the item, []) for one {"item_id"?, "prompt", "answers"} object, or (None, problems)
    naming the fields. Without an item_id the id is a hash of the prompt and answers."""
    try:
        line = ItemLine.model_validate(row)
    except ValidationError as err:
        return None, validation_problems(err)
    prompt, answers = user_prompt(line.prompt), answers_of(line.answers)
    item = ComparisonItem(line.item_id or default_item_id(prompt, answers), prompt, answers, source)
    return item, check_answers(item)


def items_from_rows(rows: list[Any], source: str) -> list[ComparisonItem]:
    """Items from objects shaped like an items file's lines (an API body's `items`); problems
    name the index, e.g. `items[2].answers: 1 given, ...`."""
    items, problems = [], []
    for index, row in enumerate(rows):
        item, found = item_from_row(row, source)
        problems += [f"items[{index}].{p}" for p in found]
        items.append(item)
    raise_problems(problems)
    return items


def read_items_jsonl(path: str | Path) -> list[ComparisonItem]:
    """Items from an uploaded file: per line {"item_id"?, "prompt", "answers"} (answers are
    strings or {"text", "sample_ref"?}). Every problem names its line."""
    path = Path(path)
    lines = read_utf8(path).splitlines()
    items, problems = [], []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            item, found = item_from_row(json.loads(raw), str(path))
        except ValueError as err:
            item, found = None, [f"invalid JSON: {err}"]
        problems += [f"{path}:{number}: {p}" for p in found]
        items.append(item)
    raise_problems(problems)
    return items
