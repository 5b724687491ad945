"""The feedback store on a real database (a SQLite file, and PostgreSQL where installed): callers
racing to add the same items, and stores made before the project column, migrated in place."""

from __future__ import annotations

import sqlite3
import threading
import uuid

import pytest
from sqlalchemy import JSON, Column, ForeignKey, Integer, MetaData, String, Table, Text, create_engine, inspect, text

from pg_server import postgres_url  # noqa: F401  (a fixture)
from rftkit.errors import RftkitError
from rftkit.feedback import Answer, ComparisonItem, FeedbackStore, Judgement

PROMPT = [{"role": "user", "content": "3+4="}]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database: a SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    server = request.getfixturevalue("postgres_url").replace("postgresql://", "postgresql+psycopg://")
    name = f"feedback_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


def race(store: FeedbackStore, batches: list[list[ComparisonItem]], skip_existing: bool) -> list:
    """Each batch added by its own thread, all released at once; per thread the ids added or the error."""
    barrier, results = threading.Barrier(len(batches)), [None] * len(batches)

    def add(index: int) -> None:
        barrier.wait()
        try:
            results[index] = store.add_items(batches[index], skip_existing=skip_existing)
        except Exception as err:  # noqa: BLE001  (the test asserts on what was raised)
            results[index] = err

    threads = [threading.Thread(target=add, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def items(trial: int, answer: str = "8") -> list[ComparisonItem]:
    return [ComparisonItem(f"job/train/{trial}/{line}", PROMPT, [Answer("7"), Answer(answer)]) for line in range(20)]


def test_callers_adding_the_same_items_at_once_each_succeed_and_share_them_out(db_url):
    store = FeedbackStore(db_url)
    for trial in range(10):
        for skip_existing in (True, False):  # the same content again is no clash either way
            batch = items(trial if skip_existing else 100 + trial)
            first, second = race(store, [batch, batch], skip_existing)
            assert isinstance(first, list) and isinstance(second, list), (first, second)
            assert sorted(first + second) == sorted(i.item_id for i in batch)  # each id added by exactly one
    assert len(store.items(limit=1000)) == 400


def test_callers_adding_other_items_under_the_same_ids_at_once_one_wins_the_other_is_told(db_url):
    store = FeedbackStore(db_url)
    for trial in range(10):
        mine, theirs = items(trial, "8"), items(trial, "9")
        results = race(store, [mine, theirs], skip_existing=False)
        [won] = [r for r in results if isinstance(r, list)]
        [lost] = [r for r in results if not isinstance(r, list)]
        assert won == [i.item_id for i in mine]  # the same ids either way
        assert isinstance(lost, RftkitError) and f"items already in the store: job/train/{trial}/0" in str(lost)
        assert race(store, [theirs, mine], skip_existing=True) == [[], []]  # left as they are
    stored = {i.item_id: i.answers[1].text for i in store.items(limit=1000)}
    assert len(stored) == 200 and len({*stored.values()}) <= 2


# ----------------------------------------------------------------------------- stores from before projects


def old_schema(metadata: MetaData) -> None:
    """The feedback tables as rftkit 27998f5 declared them (no project column)."""
    Table("feedback_criteria", metadata, Column("name", String(64), primary_key=True),
          Column("description", Text))
    Table("feedback_items", metadata, Column("id", String(128), primary_key=True), Column("prompt", JSON),
          Column("answers", JSON), Column("source", Text), Column("created_at", String(40)))
    Table("feedback_judgements", metadata, Column("id", Integer, primary_key=True, autoincrement=True),
          Column("item_id", ForeignKey("feedback_items.id"), index=True), Column("reviewer", String(128), index=True),
          Column("source", String(16)), Column("status", String(16), index=True), Column("created_at", String(40)),
          Column("preferred", Integer, nullable=True), Column("ratings", JSON), Column("unsafe", JSON),
          Column("comment", Text), Column("based_on", ForeignKey("feedback_judgements.id"), nullable=True))


def old_store(url: str, judged_item: str = "q1") -> None:
    """An old store with two criteria, two items, an AI pre-label and the judgement confirming it."""
    metadata = MetaData()
    old_schema(metadata)
    engine = create_engine(url)
    metadata.create_all(engine)
    tables = metadata.tables
    answers = [{"text": "7", "sample_ref": None}, {"text": "8", "sample_ref": None}]
    judgement = {"item_id": judged_item, "source": "ai", "status": "prelabel", "created_at": "2026-11-22T09:00:00+00:00",
                 "preferred": 0, "ratings": [{"accuracy": 5}, {"accuracy": 1}], "unsafe": [False, False], "comment": ""}
    with engine.begin() as connection:
        connection.execute(tables["feedback_criteria"].insert(), [{"name": "accuracy", "description": "right?"},
                                                                  {"name": "safety", "description": ""}])
        connection.execute(tables["feedback_items"].insert(), [
            {"id": item_id, "prompt": PROMPT, "answers": answers, "source": "old.jsonl",
             "created_at": f"2026-11-22T08:0{n}:00+00:00"} for n, item_id in enumerate(["q1", "q2"])])
        connection.execute(tables["feedback_judgements"].insert(), [
            {**judgement, "id": 7, "reviewer": "judge:j", "based_on": None},
            {**judgement, "id": 8, "reviewer": "ann", "source": "human", "status": "final", "based_on": 7}])
    engine.dispose()


def test_a_store_from_before_projects_is_migrated_in_place_into_the_default_project(db_url):
    old_store(db_url)
    store = FeedbackStore(db_url)
    assert store.describe_criteria() == {"accuracy": "right?", "safety": ""}
    assert [(i.item_id, i.source, [a.text for a in i.answers]) for i in store.items()] == [
        ("q1", "old.jsonl", ["7", "8"]), ("q2", "old.jsonl", ["7", "8"])]
    [label, confirmed] = store.judgements(status=None)
    assert (label.judgement_id, label.status, confirmed.judgement_id, confirmed.based_on) == (7, "prelabel", 8, 7)
    assert confirmed.ratings == [{"accuracy": 5}, {"accuracy": 1}] and confirmed.reviewer == "ann"
    assert store.record_judgement(Judgement("q2", "bob", preferred=1)) == 9  # ids carry on after the old ones
    assert FeedbackStore(db_url, project="beta").items() == []
    assert FeedbackStore(db_url).judgements(item_id="q2")[0].reviewer == "bob"  # opening again changes nothing
    columns = {c["name"] for c in inspect(store.engine).get_columns("feedback_judgements")}
    assert "project" in columns


def test_a_migration_that_fails_leaves_the_old_store_as_it_was(tmp_path):
    path = tmp_path / "old.db"
    old_store(f"sqlite:///{path}", judged_item="gone")  # a judgement of an item that is not there
    with pytest.raises(RftkitError, match="could not move this older feedback store's rows .* unchanged"):
        FeedbackStore(path)
    with sqlite3.connect(path) as db:
        assert [c[1] for c in db.execute("PRAGMA table_info(feedback_items)")] == [
            "id", "prompt", "answers", "source", "created_at"]
        assert db.execute("SELECT count(*) FROM feedback_judgements").fetchone() == (2,)
        assert db.execute("SELECT count(*) FROM feedback_criteria").fetchone() == (2,)
