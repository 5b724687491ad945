"""Databases for the store's tests: SQLite in a temp dir, and a throwaway PostgreSQL server
started from Debian's binaries (skipped, with the reason, where they are not installed)."""

from __future__ import annotations

import pytest

from pg_server import postgres_url  # noqa: F401  (a fixture)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    from sqlalchemy import text

    from rftkit.jobs.db import database_url, metadata, open_engine

    if request.param == "sqlite":
        engine = open_engine(database_url(tmp_path))
    else:
        engine = open_engine(request.getfixturevalue("postgres_url"))
        with engine.begin() as conn:  # each test starts from empty tables
            for table in reversed(metadata.sorted_tables):
                conn.execute(text(f"DELETE FROM {table.name}"))
    yield engine
    engine.dispose()
