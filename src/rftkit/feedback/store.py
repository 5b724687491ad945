"""The feedback store: comparison items, reviewers' judgements and AI pre-labels in SQL.

A plain library over a SQLAlchemy engine — SQLite (WAL) by default, PostgreSQL where a user
has it — so the CLI, the jobs service and tests share it, and no HTTP lives here:

    store = FeedbackStore("sqlite:///feedback.db", criteria=["accuracy", "safety"])
    [item_id] = store.add_items([ComparisonItem("q1", prompt, [Answer("7"), Answer("8")])])
    store.record_judgement(Judgement(item_id, "ann", preferred=0, ratings=[{"accuracy": 5}, {"accuracy": 1}]))
    store.export_jsonl("feedback.jsonl")        # what `rftkit rm train --feedback` reads

Every write is validated with the same rules as a file import (records.check_judgement);
a problem raises RftkitError naming the field, so an API can answer 400 with its text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from rftkit.errors import RftkitError
from rftkit.feedback.records import (
    Answer,
    ComparisonItem,
    FeedbackRecord,
    Judgement,
    check_answers,
    check_judgement,
    item_from_line,
    judgement_from_line,
    now_iso,
    parse_lines,
    raise_problems,
    record_to_line,
)


class Base(DeclarativeBase):
    pass


class CriterionRow(Base):
    __tablename__ = "feedback_criteria"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")


class ItemRow(Base):
    __tablename__ = "feedback_items"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    prompt: Mapped[Any] = mapped_column(JSON)
    answers: Mapped[Any] = mapped_column(JSON)  # [{"text": ..., "sample_ref": ...}]
    source: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[str] = mapped_column(String(40))
    judgements: Mapped[list["JudgementRow"]] = relationship(back_populates="item", order_by="JudgementRow.id")


class JudgementRow(Base):
    __tablename__ = "feedback_judgements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("feedback_items.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(16))  # human | ai
    status: Mapped[str] = mapped_column(String(16), index=True)  # final | prelabel
    created_at: Mapped[str] = mapped_column(String(40))
    preferred: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ratings: Mapped[Any] = mapped_column(JSON)
    unsafe: Mapped[Any] = mapped_column(JSON)
    comment: Mapped[str] = mapped_column(Text, default="")
    based_on: Mapped[int | None] = mapped_column(ForeignKey("feedback_judgements.id"), nullable=True)
    item: Mapped[ItemRow] = relationship(back_populates="judgements")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url_or_engine: str | Path | Engine) -> Engine:
    """An engine for a URL (`sqlite:///feedback.db`, `postgresql+psycopg://...`) or a path."""
    if isinstance(url_or_engine, Engine):
        return url_or_engine
    url = str(url_or_engine)
    url = url if "://" in url else f"sqlite:///{url}"
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _item(row: ItemRow) -> ComparisonItem:
    answers = [Answer(a["text"], a.get("sample_ref")) for a in row.answers]
    return ComparisonItem(row.id, row.prompt, answers, row.source)


def _judgement(row: JudgementRow) -> Judgement:
    return Judgement(item_id=row.item_id, reviewer=row.reviewer, preferred=row.preferred, ratings=row.ratings,
                     unsafe=row.unsafe, comment=row.comment, source=row.source, status=row.status,
                     created_at=row.created_at, judgement_id=row.id, based_on=row.based_on)


class FeedbackStore:
    """Items, judgements and criteria in one database. Thread-safe as SQLAlchemy sessions are:
    each call opens its own session."""

    def __init__(self, url_or_engine: str | Path | Engine = "sqlite:///feedback.db", criteria: Iterable[str] = ()):
        self.engine = make_engine(url_or_engine)
        Base.metadata.create_all(self.engine)
        for name in criteria:
            self.add_criterion(name)

    # ------------------------------------------------------------------ criteria

    def add_criterion(self, name: str, description: str = "") -> None:
        if not name.isidentifier():
            raise RftkitError(f"criterion {name!r}: use letters, digits and underscores (e.g. accuracy)")
        with Session(self.engine) as session, session.begin():
            session.merge(CriterionRow(name=name, description=description))

    def criteria(self) -> list[str]:
        with Session(self.engine) as session:
            return list(session.scalars(select(CriterionRow.name).order_by(CriterionRow.name)))

    # ------------------------------------------------------------------ items

    def add_items(self, items: Iterable[ComparisonItem]) -> list[str]:
        """Store items (all or none); an id already present is an error."""
        items = list(items)
        problems = [f"item {item.item_id}: {p}" for item in items for p in check_answers(item)]
        raise_problems(problems)
        with Session(self.engine) as session, session.begin():
            clash = list(session.scalars(select(ItemRow.id).where(ItemRow.id.in_([i.item_id for i in items]))))
            if clash:
                raise RftkitError(f"items already in the store: {', '.join(clash[:10])}", fix="give new item ids")
            for item in items:
                session.add(ItemRow(id=item.item_id, prompt=item.prompt, source=item.source, created_at=now_iso(),
                                    answers=[{"text": a.text, "sample_ref": a.sample_ref} for a in item.answers]))
        return [i.item_id for i in items]

    def get_item(self, item_id: str) -> ComparisonItem:
        with Session(self.engine) as session:
            row = session.get(ItemRow, item_id)
            if row is None:
                raise RftkitError(f"item_id: unknown item {item_id!r}")
            return _item(row)

    def items(self, *, pending_for: str | None = None, limit: int = 100, offset: int = 0) -> list[ComparisonItem]:
        """Items in insertion order; `pending_for` keeps those that reviewer has not judged yet."""
        with Session(self.engine) as session:
            query = select(ItemRow).order_by(ItemRow.created_at, ItemRow.id)
            if pending_for is not None:
                judged = select(JudgementRow.item_id).where(JudgementRow.reviewer == pending_for,
                                                            JudgementRow.status == "final")
                query = query.where(ItemRow.id.not_in(judged))
            return [_item(r) for r in session.scalars(query.offset(offset).limit(limit))]

    # ------------------------------------------------------------------ judgements

    def record_judgement(self, judgement: Judgement) -> int:
        """Validate and store one judgement; returns its id."""
        with Session(self.engine) as session, session.begin():
            return self._add_judgement(session, judgement, set(self.criteria()))

    def _add_judgement(self, session: Session, judgement: Judgement, criteria: set[str]) -> int:
        item = session.get(ItemRow, judgement.item_id)
        if item is None:
            raise RftkitError(f"item_id: unknown item {judgement.item_id!r}", fix="add the item first")
        raise_problems(check_judgement(judgement, len(item.answers), criteria))
        if judgement.based_on is not None and session.get(JudgementRow, judgement.based_on) is None:
            raise RftkitError(f"based_on: unknown judgement {judgement.based_on}")
        row = JudgementRow(item_id=judgement.item_id, reviewer=judgement.reviewer, source=judgement.source,
                           status=judgement.status, created_at=judgement.created_at or now_iso(),
                           preferred=judgement.preferred, ratings=list(judgement.ratings),
                           unsafe=list(judgement.unsafe), comment=judgement.comment, based_on=judgement.based_on)
        session.add(row)
        session.flush()
        return row.id

    def judgements(self, *, item_id: str | None = None, status: str | None = "final",
                   source: str | None = None) -> list[Judgement]:
        with Session(self.engine) as session:
            query = select(JudgementRow).order_by(JudgementRow.id)
            for column, value in ((JudgementRow.item_id, item_id), (JudgementRow.status, status),
                                  (JudgementRow.source, source)):
                if value is not None:
                    query = query.where(column == value)
            return [_judgement(r) for r in session.scalars(query)]

    def confirm(self, prelabel_id: int, reviewer: str, **corrections: Any) -> int:
        """A person confirms an AI pre-label (no corrections) or corrects some of its fields
        (`preferred`, `ratings`, `unsafe`, `comment`); stored as their own judgement."""
        unknown = set(corrections) - {"preferred", "ratings", "unsafe", "comment"}
        if unknown:
            raise RftkitError(f"cannot correct {', '.join(sorted(unknown))}", fix="correct preferred, ratings, unsafe or comment")
        with Session(self.engine) as session:
            row = session.get(JudgementRow, prelabel_id)
            if row is None or row.status != "prelabel":
                raise RftkitError(f"judgement {prelabel_id} is not a pre-label")
            base = _judgement(row)
        fields = {"preferred": base.preferred, "ratings": base.ratings, "unsafe": base.unsafe, "comment": base.comment}
        fields.update(corrections)
        return self.record_judgement(Judgement(item_id=base.item_id, reviewer=reviewer, source="human",
                                               status="final", based_on=prelabel_id, **fields))

    def agreement(self) -> dict:
        """Agreement between reviewers and between AI judges and people (agreement.py)."""
        from rftkit.feedback.agreement import agreement_report

        return agreement_report(self.judgements(status=None))

    def records(self, *, include_ai: bool = False) -> list[FeedbackRecord]:
        """Final judgements with their items, as training reads them; AI judgements only on request."""
        with Session(self.engine) as session:
            query = select(JudgementRow).where(JudgementRow.status == "final").order_by(JudgementRow.id)
            if not include_ai:
                query = query.where(JudgementRow.source == "human")
            return [FeedbackRecord(_item(r.item), _judgement(r)) for r in session.scalars(query)]

    # ------------------------------------------------------------------ files

    def export_jsonl(self, path: str | Path, *, include_ai: bool = False) -> int:
        path = Path(path)
        records = self.records(include_ai=include_ai)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(record_to_line(r), ensure_ascii=False) + "\n" for r in records),
                        encoding="utf-8")
        return len(records)

    def import_jsonl(self, path: str | Path) -> int:
        """Import feedback lines (all or none). A line may name a stored item by `item_id`
        alone, or bring its prompt and answers (a new item, or the same one again)."""
        path = Path(path)
        criteria = set(self.criteria())
        problems, added = [], 0
        with Session(self.engine) as session, session.begin():
            for number, line, found in parse_lines(path):
                if line is None:
                    problems += [f"{path}:{number}: {p}" for p in found]
                    continue
                try:
                    self._import_line(session, line, f"{path.name}:{number}", criteria)
                    added += 1
                except RftkitError as err:
                    problems += [f"{path}:{number}: {p}" for p in str(err).split("\n")]
            raise_problems(problems, fix="nothing was imported; fix these lines and import again")
        return added

    def _import_line(self, session: Session, line, fallback_id: str, criteria: set[str]) -> None:
        item = item_from_line(line, fallback_id)
        item_id = line.item_id or fallback_id
        stored = session.get(ItemRow, item_id)
        if stored is None and item is None:
            raise RftkitError(f"item_id: unknown item {item_id!r} (not in the store, and the line has no prompt and answers)")
        if stored is None:
            raise_problems(check_answers(item))
            session.add(ItemRow(id=item.item_id, prompt=item.prompt, source=item.source or fallback_id,
                                created_at=now_iso(),
                                answers=[{"text": a.text, "sample_ref": a.sample_ref} for a in item.answers]))
            session.flush()
        elif item is not None and [a["text"] for a in stored.answers] != [a.text for a in item.answers]:
            raise RftkitError(f"answers: differ from those of stored item {item_id!r}", fix="use a new item_id")
        self._add_judgement(session, judgement_from_line(line, item_id), criteria)
