"""The nouns of feedback, and the JSONL line they travel as.

- `ComparisonItem`: a prompt and two or more answers to compare (from a job's samples.jsonl
  or an uploaded file); each answer may say which sample it came from (`sample_ref`).
- `Judgement`: what one reviewer (a person, or an AI judge's pre-label) said of one item:
  the preferred answer (or none: a tie), a 1-5 rating per named criterion for each answer,
  an unsafe flag per answer, and a comment; with who, when and from where.
- `FeedbackRecord`: an item with one judgement — one line of a feedback JSONL file, so that a
  file alone is enough to train a reward model:

    {"item_id": "q7", "prompt": [{"role": "user", "content": "3+4="}], "answers": ["7", "8"],
     "reviewer": "ann", "source": "human", "preferred": 0,
     "ratings": [{"accuracy": 5}, {"accuracy": 1}], "unsafe": [false, false], "comment": ""}

`check_judgement` is the one set of rules for a judgement, used by the store and by file
imports alike; `read_feedback_jsonl` names the line and field of every problem.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from rftkit.errors import RftkitError

RATING_LOW, RATING_HIGH = 1, 5
MAX_REPORTED = 20  # problems listed in one error before "... and N more"


class UnknownRecord(RftkitError):
    """No such item or judgement in the store (the API answers 404)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Answer:
    text: str
    sample_ref: str | None = None  # e.g. "runs/x/samples.jsonl:12"


@dataclass(frozen=True)
class ComparisonItem:
    item_id: str
    prompt: list[dict[str, Any]]
    answers: list[Answer]
    source: str = ""


@dataclass(frozen=True)
class Judgement:
    item_id: str
    reviewer: str
    preferred: int | None = None  # index into the item's answers; None: no preference
    ratings: list[dict[str, int]] = field(default_factory=list)  # per answer: criterion -> 1..5
    unsafe: list[bool] = field(default_factory=list)  # per answer
    comment: str = ""
    source: Literal["human", "ai"] = "human"
    status: Literal["final", "prelabel"] = "final"  # prelabel: an AI judge's, awaiting a person
    created_at: str = ""
    judgement_id: int | None = None
    based_on: int | None = None  # the pre-label a person confirmed or corrected


@dataclass(frozen=True)
class FeedbackRecord:
    item: ComparisonItem
    judgement: Judgement


def check_judgement(judgement: Judgement, answers: int, criteria: set[str] | None) -> list[str]:
    """Every problem with a judgement of an item with `answers` answers, one line each naming
    the field. `criteria` None accepts any criterion name.

    >>> check_judgement(Judgement("q", "ann", preferred=2, ratings=[{"tone": 6}, {}]), 2, {"tone"})
    ['preferred: answer 2 does not exist (the item has answers 0-1)', 'ratings[0].tone: 6 is out of range 1-5']
    """
    problems = []
    if judgement.preferred is not None and not 0 <= judgement.preferred < answers:
        problems.append(f"preferred: answer {judgement.preferred} does not exist (the item has answers 0-{answers - 1})")
    for name, values in (("ratings", judgement.ratings), ("unsafe", judgement.unsafe)):
        if values and len(values) != answers:
            problems.append(f"{name}: {len(values)} entries for {answers} answers (give one per answer, in order)")
    for index, ratings in enumerate(judgement.ratings):
        for criterion, value in ratings.items():
            if criteria is not None and criterion not in criteria:
                known = ", ".join(sorted(criteria)) or "none defined"
                problems.append(f"ratings[{index}].{criterion}: unknown criterion (known: {known})")
            elif isinstance(value, bool) or not isinstance(value, int) or not RATING_LOW <= value <= RATING_HIGH:
                problems.append(f"ratings[{index}].{criterion}: {value!r} is out of range {RATING_LOW}-{RATING_HIGH}")
    if not judgement.reviewer.strip():
        problems.append("reviewer: must not be empty")
    return problems


def raise_problems(problems: list[str], fix: str | None = None) -> None:
    """One RftkitError listing (up to MAX_REPORTED of) the problems, one per line."""
    if not problems:
        return
    shown = problems[:MAX_REPORTED]
    if len(problems) > MAX_REPORTED:
        shown.append(f"... and {len(problems) - MAX_REPORTED} more")
    raise RftkitError("\n".join(shown), fix=fix)


# ----------------------------------------------------------------------------- the JSONL line


def read_utf8(path: Path, fix: str | None = None) -> str:
    """A text file's text; a missing file or one that is not UTF-8 is an RftkitError naming it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RftkitError(f"{path}: no such file", fix=fix) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise RftkitError(f"{path}:{line}: not UTF-8 text (byte {err.start} cannot be decoded)",
                          fix="save the file as UTF-8 JSONL") from None


def default_item_id(prompt: list[dict[str, Any]], answers: list[Answer]) -> str:
    """The id of an item given without one: a hash of its prompt and answer texts, so the same
    item added again gets the same id and different items never share one.

    >>> default_item_id([{"role": "user", "content": "3+4="}], [Answer("7"), Answer("8")])
    'item-5c3ba3fa5c887598'
    """
    content = json.dumps({"prompt": prompt, "answers": [a.text for a in answers]}, sort_keys=True,
                         ensure_ascii=False, separators=(",", ":"))
    return "item-" + hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


def user_prompt(prompt: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A prompt given as a string is one user message."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


class AnswerLine(BaseModel):
    """An answer as a file or body gives it: {"text", "sample_ref"?}, or the text alone."""

    model_config = ConfigDict(extra="forbid")
    text: str
    sample_ref: str | None = None


def _text_alone(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else value


AnswerField = Annotated[AnswerLine, BeforeValidator(_text_alone)]


def answers_of(lines: list[AnswerLine]) -> list[Answer]:
    return [Answer(a.text, a.sample_ref) for a in lines]


def validation_problems(err: ValidationError) -> list[str]:
    """One `field: message` line per problem pydantic found."""
    problems = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(line)"
        problems.append(f"{where}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}")
    return problems


class FeedbackLine(BaseModel):
    """One line of a feedback JSONL file. `prompt` and `answers` may be left out when the
    item is already in the store (`item_id` names it)."""

    model_config = ConfigDict(extra="forbid")
    item_id: str | None = None
    prompt: str | list[dict[str, Any]] | None = None
    answers: list[AnswerField] | None = None
    source_file: str | None = None
    reviewer: str
    source: Literal["human", "ai"] = "human"
    status: Literal["final", "prelabel"] = "final"
    created_at: str | None = None
    preferred: int | None = None
    ratings: list[dict[str, Any]] = []
    unsafe: list[bool] = []
    comment: str = ""


def item_from_line(line: FeedbackLine) -> ComparisonItem | None:
    """The line's item, or None when it names a stored item by `item_id` alone."""
    if line.prompt is None or line.answers is None:
        return None
    prompt, answers = user_prompt(line.prompt), answers_of(line.answers)
    return ComparisonItem(line.item_id or default_item_id(prompt, answers), prompt, answers, line.source_file or "")


def judgement_from_line(line: FeedbackLine, item_id: str) -> Judgement:
    return Judgement(item_id=item_id, reviewer=line.reviewer, preferred=line.preferred, ratings=line.ratings,
                     unsafe=line.unsafe, comment=line.comment, source=line.source, status=line.status,
                     created_at=line.created_at or now_iso())


def record_to_line(record: FeedbackRecord) -> dict[str, Any]:
    """The JSONL object for a record (what export writes and import reads)."""
    item, judgement = record.item, record.judgement
    answers = [a.text if a.sample_ref is None else {"text": a.text, "sample_ref": a.sample_ref} for a in item.answers]
    line = {"item_id": item.item_id, "prompt": item.prompt, "answers": answers, "reviewer": judgement.reviewer,
            "source": judgement.source, "status": judgement.status, "created_at": judgement.created_at,
            "preferred": judgement.preferred, "ratings": judgement.ratings, "unsafe": judgement.unsafe,
            "comment": judgement.comment}
    if item.source:
        line["source_file"] = item.source
    return line


def parse_lines(path: Path) -> list[tuple[int, FeedbackLine | None, list[str]]]:
    """(line number, parsed line or None, problems) for every non-blank line of a JSONL file."""
    parsed = []
    for number, raw in enumerate(read_utf8(path).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            parsed.append((number, FeedbackLine.model_validate(json.loads(raw)), []))
        except json.JSONDecodeError as err:
            parsed.append((number, None, [f"invalid JSON: {err.msg}"]))
        except ValidationError as err:
            parsed.append((number, None, validation_problems(err)))
    return parsed


def read_feedback_jsonl(path: str | Path, criteria: set[str] | None = None) -> list[FeedbackRecord]:
    """Every record of a self-contained feedback file (each line has its prompt and answers).
    Raises RftkitError naming `file:line: field` for every problem found."""
    path = Path(path)
    records, problems = [], []
    for number, line, found in parse_lines(path):
        if line is not None:
            item = item_from_line(line)
            if item is None:
                found = ["prompt, answers: required in a feedback file (item_id alone needs a feedback store)"]
            else:
                judgement = judgement_from_line(line, item.item_id)
                found = check_answers(item) + check_judgement(judgement, len(item.answers), criteria)
                records.append(FeedbackRecord(item, judgement))
        problems += [f"{path}:{number}: {p}" for p in found]
    raise_problems(problems, fix="see docs/feedback.md for the line format")
    if not records:
        raise RftkitError(f"{path}: no feedback lines", fix="give one JSON object per line (docs/feedback.md)")
    return records


def check_answers(item: ComparisonItem) -> list[str]:
    return [] if len(item.answers) >= 2 else [f"answers: {len(item.answers)} given, a comparison needs at least 2"]
