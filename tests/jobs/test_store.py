"""The store on SQLite and on a real PostgreSQL server: the same code, the same answers."""

from __future__ import annotations

import threading

import pytest

from rftkit.jobs.keys import create_key, project_of, revoke_key
from rftkit.jobs.states import JobConflict
from rftkit.jobs.store import NotFound, Store, event_id


def job_values(job_id: str) -> dict:
    return {"id": job_id, "body": {"model": "m", "training_file": "file-1"},
            "spec": {"model": "/models/m", "method": {"type": "reinforcement"}}, "run_dir": f"/runs/{job_id}"}


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    from sqlalchemy import text

    from rftkit.jobs.db import database_url, open_engine

    with open_engine(database_url(tmp_path)).connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000


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
