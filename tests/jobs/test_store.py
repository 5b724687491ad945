"""The store on SQLite and on a real PostgreSQL server: the same code, the same answers."""

from __future__ import annotations

import threading

import pytest

from rftkit.jobs.keys import create_key, project_of, revoke_key
from rftkit.jobs.states import JobConflict
from rftkit.jobs.store import KeyReused, NotFound, Store, event_id


def job_values(job_id: str, training_file: str = "file-1") -> dict:
    return {"id": job_id, "body": {"model": "m", "training_file": training_file},
            "spec": {"model": "/models/m", "method": {"type": "reinforcement"}}, "run_dir": f"/runs/{job_id}"}


# A second process that takes SQLite's write lock (BEGIN IMMEDIATE, one row written) and holds it
# until told on stdin: the long transaction of a worker, say, while the API writes.
LOCK_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO events (job_id, created_at, level, type, message, from_run) "
           "VALUES ('ftjob-a', 0, 'info', 'message', 'from the long transaction', 0)")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
print("committed", flush=True)
"""


class LockHolder:
    def __init__(self, database):
        import subprocess
        import sys

        self.process = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(database)], text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "committed"
        assert self.process.wait(30) == 0


def writing(engine):
    """An Event set once one of the engine's connections starts an INSERT: from then on that
    writer is inside SQLite, asking for the write lock."""
    from sqlalchemy import event

    started = threading.Event()
    engine.dispose()  # the hook goes on connections made from now on
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.set_trace_callback(
        lambda sql: started.set() if sql.lstrip().upper().startswith("INSERT") else None))
    return started


def in_thread(call):
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except Exception as err:  # noqa: BLE001 — the test reads it
            outcome["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_writer_waits_for_a_long_transaction_and_then_succeeds(tmp_path):
    import time

    from rftkit.jobs.db import database_url, open_engine

    engine = open_engine(database_url(tmp_path))
    store = Store(engine)
    store.create_job("alpha", job_values("ftjob-a"))
    started = writing(engine)
    holder = LockHolder(tmp_path / "rftkit.db")
    writers = [in_thread(lambda: store.add_event("ftjob-a", "from the API")),
               in_thread(lambda: store.create_job("alpha", job_values("ftjob-b"), "key-1"))]
    assert started.wait(30)
    # hold the lock longer than Python's sqlite3 default wait (5 s), so that only the store's own
    # busy timeout (30 s) lets the writers through: without it they fail with "database is locked"
    time.sleep(6)
    assert all(thread.is_alive() for thread, _ in writers)  # still waiting for the lock
    holder.release()
    for thread, outcome in writers:
        thread.join(60)
        assert "error" not in outcome, outcome.get("error")
    messages = [e["message"] for e in store.list_events("ftjob-a", None, 10)[0]]
    assert messages == ["from the API", "from the long transaction", "Validating training file"]
    assert store.create_job("alpha", job_values("ftjob-b"), "key-1")[0]["id"] == "ftjob-b"


def test_a_lock_held_past_the_busy_timeout_is_a_clear_error_and_nothing_is_half_written(tmp_path):
    from rftkit.jobs.db import DatabaseBusy, database_url, open_engine

    engine = open_engine(database_url(tmp_path), busy_timeout_ms=200)
    store = Store(engine)
    store.create_job("alpha", job_values("ftjob-a"))
    holder = LockHolder(tmp_path / "rftkit.db")
    with pytest.raises(DatabaseBusy, match="locked by another writer for over 0.2 s; nothing was written") as err:
        store.create_job("alpha", job_values("ftjob-b"), "key-1")  # a job, its key and an event: all or none
    assert err.value.fix == "retry the request"
    holder.release()
    with pytest.raises(NotFound):
        store.job("ftjob-b")
    assert [e["message"] for e in store.list_events("ftjob-a", None, 10)[0]] == [
        "from the long transaction", "Validating training file"]
    job, created = store.create_job("alpha", job_values("ftjob-b"), "key-1")  # the retry goes through
    assert created and job["id"] == "ftjob-b"


def test_a_database_from_an_older_version_gets_the_new_columns(engine):
    from sqlalchemy import text

    from rftkit.jobs.db import add_missing_columns

    with engine.begin() as conn:  # as a database created before these columns existed
        conn.execute(text("ALTER TABLE jobs DROP COLUMN trained_tokens"))
        conn.execute(text("ALTER TABLE jobs DROP COLUMN result_files"))
    assert add_missing_columns(engine) == ["jobs.trained_tokens", "jobs.result_files"]
    assert add_missing_columns(engine) == []
    store = Store(engine)
    store.create_job("alpha", job_values("ftjob-old"))
    store.update_job("ftjob-old", trained_tokens=12, result_files=["file-r"])
    job = store.job("ftjob-old")
    assert job["trained_tokens"] == 12 and job["result_files"] == ["file-r"]


def test_jobs_paginate_newest_first_per_project(engine):
    store = Store(engine)
    for n in range(5):
        store.create_job("alpha", job_values(f"ftjob-{n}"))
    store.create_job("beta", job_values("ftjob-other"))
    first, more = store.list_jobs("alpha", None, 2)
    assert [j["id"] for j in first] == ["ftjob-4", "ftjob-3"] and more
    rest, more = store.list_jobs("alpha", "ftjob-3", 10)
    assert [j["id"] for j in rest] == ["ftjob-2", "ftjob-1", "ftjob-0"] and not more
    with pytest.raises(NotFound):
        store.job("ftjob-other", "alpha")
    assert store.job("ftjob-other", "beta")["body"]["model"] == "m"  # JSON columns round-trip


def test_idempotency_key_returns_the_first_job(engine):
    store = Store(engine)
    first, created = store.create_job("alpha", job_values("ftjob-a"), "key-1")
    again, created_again = store.create_job("alpha", job_values("ftjob-b"), "key-1")
    assert created and not created_again and again["id"] == "ftjob-a"
    with pytest.raises(NotFound):
        store.job("ftjob-b")


def test_idempotency_key_with_another_body_is_refused(engine):
    store = Store(engine)
    store.create_job("alpha", job_values("ftjob-a"), "key-1")
    reordered = {**job_values("ftjob-b"), "body": {"training_file": "file-1", "model": "m"}}
    assert store.create_job("alpha", reordered, "key-1") == (store.job("ftjob-a"), False)  # key order: same body
    with pytest.raises(KeyReused, match="Idempotency-Key 'key-1' was used with a different request body"):
        store.create_job("alpha", job_values("ftjob-c", training_file="file-2"), "key-1")
    with pytest.raises(NotFound):
        store.job("ftjob-c")
    assert store.create_job("beta", job_values("ftjob-d", training_file="file-2"), "key-1")[1]  # another project


def test_idempotency_keys_stored_before_bodies_were_hashed_still_return_their_job(engine):
    from sqlalchemy import text

    from rftkit.jobs.db import add_missing_columns

    store = Store(engine)
    store.create_job("alpha", job_values("ftjob-old"), "old-key")
    with engine.begin() as conn:  # as a database made before the column existed
        conn.execute(text("ALTER TABLE idempotency_keys DROP COLUMN body_sha256"))
    assert add_missing_columns(engine) == ["idempotency_keys.body_sha256"]
    again, created = store.create_job("alpha", job_values("ftjob-new", training_file="file-2"), "old-key")
    assert again["id"] == "ftjob-old" and not created
    store.create_job("alpha", job_values("ftjob-b"), "new-key")
    with pytest.raises(KeyReused):
        store.create_job("alpha", job_values("ftjob-c", training_file="file-2"), "new-key")


def test_status_changes_are_compare_and_set(engine):
    store = Store(engine)
    store.create_job("alpha", job_values("ftjob-a"))
    assert store.change("ftjob-a", "validated", "ok")["status"] == "queued"
    assert store.change("ftjob-a", "start", "go")["status"] == "running"
    with pytest.raises(JobConflict, match="cannot resume a job that is running"):
        store.change("ftjob-a", "resume", project="alpha")
    outcomes = []

    def cancel():
        try:
            store.change("ftjob-a", "cancel", "cancelled", project="alpha")
            outcomes.append("won")
        except JobConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=cancel) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 3 + ["won"]
    job = store.job("ftjob-a")
    assert job["status"] == "cancelled" and job["finished_at"] is not None
    with pytest.raises(JobConflict):
        store.change("ftjob-a", "succeed", "too late")


def test_run_events_rewind_to_the_resumed_checkpoint(engine):
    store = Store(engine)
    store.create_job("alpha", job_values("ftjob-a"))
    rows = [{"message": f"step {s}", "type": "metrics", "step": s, "data": {"metrics": {"step": s, "train_tokens": 10 * s}}}
            for s in (1, 2, 3, 4)]
    store.ingest("ftjob-a", rows[:1], 100)
    store.ingest("ftjob-a", rows[1:] + [{"message": "no step", "step": None}], 500, steps_done=4)
    assert store.job("ftjob-a")["trained_tokens"] == 10 + 20 + 30 + 40
    store.add_event("ftjob-a", "from the service")
    assert store.rewind_events("ftjob-a", 2, 200) == 2
    assert [r["step"] for r in store.metrics_rows("ftjob-a")] == [1, 2]
    assert [r["step"] for r in store.metrics_rows("ftjob-a", last=1)] == [2]
    assert store.job("ftjob-a")["trained_tokens"] == 10 + 20
    events, _ = store.list_events("ftjob-a", None, 100)
    assert [e["message"] for e in events] == ["from the service", "no step", "step 2", "step 1",
                                              "Validating training file"]
    assert store.job("ftjob-a")["events_offset"] == 200
    older, more = store.list_events("ftjob-a", event_id(events[1]["seq"]), 2)
    assert [e["message"] for e in older] == ["step 2", "step 1"] and more
    assert store.rewind_events("ftjob-a", None, 0) == 3  # a fresh start forgets every run event
    assert store.job("ftjob-a")["trained_tokens"] is None


def test_keys_are_hashed_scoped_and_revocable(engine):
    from sqlalchemy import select

    from rftkit.jobs.db import api_keys

    key, info = create_key(engine, "alpha", "ci")
    with engine.connect() as conn:
        stored = conn.execute(select(api_keys.c.secret_hash)).scalar()
    assert key not in stored and len(stored) == 64
    assert project_of(engine, key) == "alpha"
    assert project_of(engine, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert project_of(engine, "rftk_000000000000_" + "x" * 40) is None
    revoke_key(engine, info.id)
    assert project_of(engine, key) is None
    with pytest.raises(NotFound):
        revoke_key(engine, info.id)


def test_values_postgresql_refuses_are_the_requests_fault(postgres_url):
    """NUL in text and text over a column's length: SQLite stores them, PostgreSQL refuses them;
    either way not a server error (the API answers 400)."""
    from sqlalchemy import text

    from rftkit.errors import RftkitError
    from rftkit.jobs.db import metadata, open_engine

    engine = open_engine(postgres_url)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(text(f"DELETE FROM {table.name}"))
    store = Store(engine)
    store.create_job("alpha", job_values("ftjob-a"))
    with pytest.raises(RftkitError, match="holds a NUL character"):
        store.add_event("ftjob-a", "a\x00b")
    with pytest.raises(RftkitError, match="longer than the database allows"):
        store.create_job("alpha", job_values("ftjob-b"), "k" * 300)
    assert store.count_events("ftjob-a") == 1
    engine.dispose()
