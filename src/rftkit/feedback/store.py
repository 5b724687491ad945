"""The feedback store: comparison items, reviewers' judgements and AI pre-labels in SQL.

A plain library over a SQLAlchemy engine — SQLite (WAL) by default, PostgreSQL where a user
has it — so the CLI, the jobs service and tests share it, and no HTTP lives here:

    store = FeedbackStore("sqlite:///feedback.db", criteria=["accuracy", "safety"])
    [item_id] = store.add_items([ComparisonItem("q1", prompt, [Answer("7"), Answer("8")])])
    store.record_judgement(Judgement(item_id, "ann", preferred=0, ratings=[{"accuracy": 5}, {"accuracy": 1}]))
    store.export_jsonl("feedback.jsonl")        # what `rftkit rm train --feedback` reads

A store sees one `project` (default "default"): several projects share one database — the
jobs service keeps each API key's project's feedback in its own database this way — and
item ids, criteria and judgements of one are invisible to the others.

Every write is validated with the same rules as a file import (records.check_judgement);
a problem raises RftkitError naming the field, so an API can answer 400 with its text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import (JSON, Connection, ForeignKey, ForeignKeyConstraint, Integer, MetaData, String, Table, Text,
                        and_, create_engine, event, insert, inspect, or_, select, text)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from rftkit.errors import RftkitError
from rftkit.feedback.records import (
    Answer,
    UnknownRecord,
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
    project: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")


class ItemRow(Base):
    __tablename__ = "feedback_items"
    project: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    prompt: Mapped[Any] = mapped_column(JSON)
    answers: Mapped[Any] = mapped_column(JSON)  # [{"text": ..., "sample_ref": ...}]
    source: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[str] = mapped_column(String(40))
    judgements: Mapped[list["JudgementRow"]] = relationship(back_populates="item", order_by="JudgementRow.id")


class JudgementRow(Base):
    __tablename__ = "feedback_judgements"
    __table_args__ = (ForeignKeyConstraint(["project", "item_id"], ["feedback_items.project", "feedback_items.id"]),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(64), index=True)
    item_id: Mapped[str] = mapped_column(String(128), index=True)
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


def _answers(item: ComparisonItem) -> list[dict]:
    return [{"text": a.text, "sample_ref": a.sample_ref} for a in item.answers]


def _item(row: ItemRow) -> ComparisonItem:
    answers = [Answer(a["text"], a.get("sample_ref")) for a in row.answers]
    return ComparisonItem(row.id, row.prompt, answers, row.source)


def _judgement(row: JudgementRow) -> Judgement:
    return Judgement(item_id=row.item_id, reviewer=row.reviewer, preferred=row.preferred, ratings=row.ratings,
                     unsafe=row.unsafe, comment=row.comment, source=row.source, status=row.status,
                     created_at=row.created_at, judgement_id=row.id, based_on=row.based_on)


def _same_item(row: ItemRow, item: ComparisonItem) -> bool:
    return row.prompt == item.prompt and [a["text"] for a in row.answers] == [a.text for a in item.answers]


def _insert_ignoring_stored(engine: Engine, row: dict):
    """An INSERT that leaves a row whose key is already stored as it is and returns the ids it
    inserted (ON CONFLICT DO NOTHING RETURNING) where the database has that; elsewhere a plain
    INSERT, whose clash raises IntegrityError."""
    dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(engine.dialect.name)
    if dialect is None:
        return insert(ItemRow).values(row)
    return dialect.insert(ItemRow).values(row).on_conflict_do_nothing().returning(ItemRow.id)


OLD_TABLES = ("feedback_criteria", "feedback_items", "feedback_judgements")  # parents first


def _tables_without_project(connection: Connection) -> list[str]:
    inspector = inspect(connection)
    return [name for name in OLD_TABLES if inspector.has_table(name)
            and "project" not in {c["name"] for c in inspector.get_columns(name)}]


def _migrate_to_projects(engine: Engine) -> None:
    """Rebuild feedback tables made before stores had projects (rftkit before ba3551f), every
    row in project "default", in one transaction: a failure leaves the old tables as they were."""
    with engine.connect() as connection:
        if not _tables_without_project(connection):
            return
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite would run the DROPs outside a transaction
        old = [Table(name, MetaData(), autoload_with=connection) for name in _tables_without_project(connection)]
        rows = {table.name: [dict(r._mapping) for r in connection.execute(select(table))] for table in old}
        for table in reversed(old):
            table.drop(connection)
        Base.metadata.create_all(connection)
        for table in old:
            if rows[table.name]:
                new = Base.metadata.tables[table.name]
                connection.execute(insert(new), [{**{k: v for k, v in row.items() if k in new.c}, "project": "default"}
                                                 for row in rows[table.name]])
        if engine.dialect.name == "postgresql" and rows.get("feedback_judgements"):
            connection.execute(text("SELECT setval(pg_get_serial_sequence('feedback_judgements', 'id'), "
                                    "(SELECT max(id) FROM feedback_judgements))"))


class FeedbackStore:
    """Items, judgements and criteria of one project in one database. Thread-safe as
    SQLAlchemy sessions are: each call opens its own session."""

    def __init__(self, url_or_engine: str | Path | Engine = "sqlite:///feedback.db", criteria: Iterable[str] = (),
                 *, project: str = "default"):
        self.engine = make_engine(url_or_engine)
        self.project = project
        try:
            _migrate_to_projects(self.engine)
        except IntegrityError as err:
            raise RftkitError(f"{self.engine.url}: could not move this older feedback store's rows into project "
                              f"'default' ({err.orig}); the store is unchanged",
                              fix="repair the rows named, or import its feedback into a new store") from None
        Base.metadata.create_all(self.engine)
        for name in criteria:
            self.add_criterion(name)

    # ------------------------------------------------------------------ criteria

    def add_criterion(self, name: str, description: str = "") -> None:
        if not name.isidentifier():
            raise RftkitError(f"criterion {name!r}: use letters, digits and underscores (e.g. accuracy)")
        with Session(self.engine) as session, session.begin():
            session.merge(CriterionRow(project=self.project, name=name, description=description))

    def describe_criteria(self) -> dict[str, str]:
        """{criterion: description}, by name."""
        with Session(self.engine) as session:
            rows = session.scalars(select(CriterionRow).where(CriterionRow.project == self.project)
                                   .order_by(CriterionRow.name))
            return {row.name: row.description for row in rows}

    def criteria(self) -> list[str]:
        return list(self.describe_criteria())

    # ------------------------------------------------------------------ items

    def add_items(self, items: Iterable[ComparisonItem], *, skip_existing: bool = False) -> list[str]:
        """Store items (all or none) and return the ids this call added. An item already stored
        with the same prompt and answers is skipped (adding it again changes nothing); an id
        stored with other content is an error, or with `skip_existing` is left as it is (adding
        a run's samples again). Safe when several callers add the same items at once."""
        items = list(items)
        ids = [i.item_id for i in items]
        problems = [f"item {item.item_id}: {p}" for item in items for p in check_answers(item)]
        problems += [f"item {i}: given more than once" for i in sorted({i for i in ids if ids.count(i) > 1})]
        raise_problems(problems)
        try:
            with Session(self.engine) as session, session.begin():
                # in id order, so two callers adding overlapping items wait for each other, not deadlock
                added = {i.item_id for i in sorted(items, key=lambda i: i.item_id) if self._insert_item(session, i)}
                clash = self._clashes(session, [i for i in items if i.item_id not in added])
                if clash and not skip_existing:
                    raise self._clash_error(clash)
        except IntegrityError:  # a database without ON CONFLICT, racing another caller
            with Session(self.engine) as session:
                stored = session.scalars(select(ItemRow.id).where(ItemRow.project == self.project, ItemRow.id.in_(ids)))
                raise self._clash_error(sorted(stored)) from None
        return [i for i in ids if i in added]

    def _insert_item(self, session: Session, item: ComparisonItem) -> bool:
        """Insert the item unless its id is stored (by anyone, even a caller racing this one)."""
        row = {"project": self.project, "id": item.item_id, "prompt": item.prompt, "source": item.source,
               "created_at": now_iso(), "answers": _answers(item)}
        result = session.connection().execute(_insert_ignoring_stored(self.engine, row))  # rowcount: -1 on psycopg
        return result.first() is not None if result.returns_rows else True

    def _clashes(self, session: Session, items: list[ComparisonItem]) -> list[str]:
        """Ids of `items` stored with another prompt or other answers."""
        stored = {row.id: row for row in session.scalars(
            select(ItemRow).where(ItemRow.project == self.project, ItemRow.id.in_([i.item_id for i in items])))}
        return sorted(i.item_id for i in items if i.item_id in stored and not _same_item(stored[i.item_id], i))

    @staticmethod
    def _clash_error(ids: list[str]) -> RftkitError:
        more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
        return RftkitError(f"items already in the store: {', '.join(ids[:10])}{more}",
                           fix="give new item ids (adding an item again needs the same prompt and answers)")

    def _item_row(self, session: Session, item_id: str) -> ItemRow:
        row = session.get(ItemRow, (self.project, item_id))
        if row is None:
            raise UnknownRecord(f"item_id: unknown item {item_id!r}", fix="add the item first")
        return row

    def get_item(self, item_id: str) -> ComparisonItem:
        with Session(self.engine) as session:
            return _item(self._item_row(session, item_id))

    def items(self, *, pending_for: str | None = None, limit: int = 100, offset: int = 0,
              after: str | None = None) -> list[ComparisonItem]:
        """Items in insertion order; `pending_for` keeps those that reviewer has not judged yet;
        `after` starts after that item (cursor pagination)."""
        with Session(self.engine) as session:
            query = select(ItemRow).where(ItemRow.project == self.project).order_by(ItemRow.created_at, ItemRow.id)
            if pending_for is not None:
                judged = select(JudgementRow.item_id).where(JudgementRow.project == self.project,
                                                            JudgementRow.reviewer == pending_for,
                                                            JudgementRow.status == "final")
                query = query.where(ItemRow.id.not_in(judged))
            if after is not None:
                last = self._item_row(session, after)
                query = query.where(or_(ItemRow.created_at > last.created_at,
                                        and_(ItemRow.created_at == last.created_at, ItemRow.id > last.id)))
            return [_item(r) for r in session.scalars(query.offset(offset).limit(limit))]

    # ------------------------------------------------------------------ judgements

    def record_judgement(self, judgement: Judgement) -> int:
        """Validate and store one judgement; returns its id."""
        with Session(self.engine) as session, session.begin():
            return self._add_judgement(session, judgement, set(self.criteria()))

    def _judgement_row(self, session: Session, judgement_id: int) -> JudgementRow | None:
        row = session.get(JudgementRow, judgement_id)
        return row if row is not None and row.project == self.project else None

    def _add_judgement(self, session: Session, judgement: Judgement, criteria: set[str]) -> int:
        item = self._item_row(session, judgement.item_id)
        raise_problems(check_judgement(judgement, len(item.answers), criteria))
        if judgement.based_on is not None and self._judgement_row(session, judgement.based_on) is None:
            raise RftkitError(f"based_on: unknown judgement {judgement.based_on}")
        row = JudgementRow(project=self.project, item_id=judgement.item_id, reviewer=judgement.reviewer,
                           source=judgement.source, status=judgement.status,
                           created_at=judgement.created_at or now_iso(), preferred=judgement.preferred,
                           ratings=list(judgement.ratings), unsafe=list(judgement.unsafe), comment=judgement.comment,
                           based_on=judgement.based_on)
        session.add(row)
        session.flush()
        return row.id

    def judgements(self, *, item_id: str | None = None, status: str | None = "final",
                   source: str | None = None) -> list[Judgement]:
        with Session(self.engine) as session:
            query = select(JudgementRow).where(JudgementRow.project == self.project).order_by(JudgementRow.id)
            for column, value in ((JudgementRow.item_id, item_id), (JudgementRow.status, status),
                                  (JudgementRow.source, source)):
                if value is not None:
                    query = query.where(column == value)
            return [_judgement(r) for r in session.scalars(query)]

    def judgement(self, judgement_id: int) -> Judgement:
        with Session(self.engine) as session:
            row = self._judgement_row(session, judgement_id)
            if row is None:
                raise UnknownRecord(f"judgement {judgement_id}: unknown judgement")
            return _judgement(row)

    def confirm(self, prelabel_id: int, reviewer: str, **corrections: Any) -> int:
        """A person confirms an AI pre-label (no corrections) or corrects some of its fields
        (`preferred`, `ratings`, `unsafe`, `comment`); stored as their own judgement."""
        unknown = set(corrections) - {"preferred", "ratings", "unsafe", "comment"}
        if unknown:
            raise RftkitError(f"cannot correct {', '.join(sorted(unknown))}", fix="correct preferred, ratings, unsafe or comment")
        base = self.judgement(prelabel_id)
        if base.status != "prelabel":
            raise RftkitError(f"judgement {prelabel_id} is not a pre-label", fix="confirm a judgement with status prelabel")
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
            query = (select(JudgementRow).where(JudgementRow.project == self.project, JudgementRow.status == "final")
                     .order_by(JudgementRow.id))
            if not include_ai:
                query = query.where(JudgementRow.source == "human")
            return [FeedbackRecord(_item(r.item), _judgement(r)) for r in session.scalars(query)]

    # ------------------------------------------------------------------ files

    def to_jsonl(self, *, include_ai: bool = False) -> str:
        """The feedback file's text: one line per final judgement (records())."""
        return "".join(json.dumps(record_to_line(r), ensure_ascii=False) + "\n"
                       for r in self.records(include_ai=include_ai))

    def export_jsonl(self, path: str | Path, *, include_ai: bool = False) -> int:
        path = Path(path)
        text = self.to_jsonl(include_ai=include_ai)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return text.count("\n")

    def import_jsonl(self, path: str | Path, *, name: str | None = None) -> int:
        """Import feedback lines (all or none). A line may name a stored item by `item_id`
        alone, or bring its prompt and answers (a new item, or the same one again). New items'
        source is `NAME:LINE`, NAME by default the file's name."""
        path = Path(path)
        name = name or path.name
        criteria = set(self.criteria())
        problems, added = [], 0
        with Session(self.engine) as session, session.begin():
            for number, line, found in parse_lines(path):
                if line is None:
                    problems += [f"{path}:{number}: {p}" for p in found]
                    continue
                try:
                    self._import_line(session, line, f"{name}:{number}", criteria)
                    added += 1
                except RftkitError as err:
                    problems += [f"{path}:{number}: {p}" for p in str(err).split("\n")]
            raise_problems(problems, fix="nothing was imported; fix these lines and import again")
        return added

    def _import_line(self, session: Session, line, source: str, criteria: set[str]) -> None:
        item = item_from_line(line)
        item_id = item.item_id if item is not None else line.item_id
        if item_id is None:
            raise RftkitError("item_id: missing, and the line has no prompt and answers",
                              fix="name a stored item, or give the prompt and answers")
        stored = session.get(ItemRow, (self.project, item_id))
        if stored is None and item is None:
            raise RftkitError(f"item_id: unknown item {item_id!r} (not in the store, and the line has no prompt and answers)")
        if stored is None:
            raise_problems(check_answers(item))
            session.add(ItemRow(project=self.project, id=item.item_id, prompt=item.prompt,
                                source=item.source or source, created_at=now_iso(), answers=_answers(item)))
            session.flush()
        elif item is not None and not _same_item(stored, item):
            raise RftkitError(f"prompt, answers: differ from those of stored item {item_id!r}", fix="use a new item_id")
        self._add_judgement(session, judgement_from_line(line, item_id), criteria)
