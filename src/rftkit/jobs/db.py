"""The service's tables and database engine: SQLite by default, PostgreSQL through the same code.

SQLite runs in WAL mode with a busy timeout, so the API's readers never block the worker's
writer and concurrent writers wait instead of failing. A write lock held past the timeout
raises DatabaseBusy (HTTP 503, with Retry-After): the waiting transaction is rolled back whole,
so nothing is half-written, and the caller may retry. Values PostgreSQL refuses and SQLite
takes (NUL in text, text over its column's length) are the request's fault: RftkitError (400).
Tables are created on first use, and columns added since a database was created are added to
it (all such columns are nullable).
Ids seen by users (`ftjob-…`, `file-…`) are random; each table also has an integer `seq`
that orders rows for cursor pagination.
"""

from __future__ import annotations

import sqlite3
from functools import partial
from pathlib import Path

from sqlalchemy import JSON, BigInteger, Boolean, Column, Integer, MetaData, String, Table, Text
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine

from rftkit.errors import RftkitError

BUSY_TIMEOUT_MS = 30_000
metadata = MetaData()


class DatabaseBusy(RftkitError):
    """Another writer held the SQLite database's write lock past the busy timeout (HTTP 503)."""

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(32), primary_key=True),
    Column("project", String(64), nullable=False, index=True),
    Column("name", String(128), nullable=False, default=""),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
)

files = Table(
    "files", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("project", String(64), nullable=False, index=True),
    Column("filename", String(512), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("path", Text, nullable=False),
    Column("kind", String(16)),  # reinforcement or supervised: what the rows are shaped for
    Column("rows", Integer),
)

jobs = Table(
    "jobs", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("project", String(64), nullable=False, index=True),
    Column("status", String(24), nullable=False, index=True),
    Column("created_at", BigInteger, nullable=False),
    Column("started_at", BigInteger),
    Column("finished_at", BigInteger),
    Column("body", JSON, nullable=False),  # the request as given (file ids)
    Column("spec", JSON, nullable=False),  # the job spec the worker runs (file paths)
    Column("run_dir", Text, nullable=False),
    Column("fine_tuned_model", String(256), index=True),
    Column("error", JSON),
    Column("pid", Integer),
    Column("events_offset", BigInteger, nullable=False, default=0),  # bytes of events.jsonl ingested
    Column("steps_done", Integer, nullable=False, default=0),
    Column("total_steps", Integer),
    Column("attempts", Integer, nullable=False, default=0),
    Column("trained_tokens", BigInteger),  # the sum of train_tokens over the metrics events
    Column("result_files", JSON),  # ids of the files written when the job succeeded
)

events = Table(
    "events", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(40), nullable=False, index=True),
    Column("created_at", BigInteger, nullable=False),
    Column("level", String(8), nullable=False),
    Column("type", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("step", Integer),
    Column("data", JSON),
    Column("from_run", Boolean, nullable=False, default=False),  # from events.jsonl (rewound on resume)
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("project", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("job_id", String(40), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("body_sha256", String(64)),  # of the canonical request body (None: keys stored before it was)
)


def database_url(data_dir: Path, url: str | None = None) -> str:
    """`url` when given, else the SQLite file under the data directory."""
    return url or f"sqlite:///{Path(data_dir).resolve() / 'rftkit.db'}"


def _sqlite_pragmas(busy_timeout_ms: int, dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across process crashes
    cursor.close()


def _database_error(busy_timeout_ms: int, context) -> None:
    """SQLAlchemy's handle_error hook: errors the request caused, not the server, become
    RftkitError (400), a lock held past the busy timeout DatabaseBusy (503). PostgreSQL refuses
    what SQLite stores: NUL in text and text longer than its column."""
    original = context.original_exception
    if isinstance(original, sqlite3.OperationalError) and "locked" in str(original):
        raise DatabaseBusy(f"the database stayed locked by another writer for over {busy_timeout_ms / 1000:g} s; "
                           "nothing was written", fix="retry the request") from original
    if "cannot contain NUL (0x00)" in str(original):
        raise RftkitError("a text value holds a NUL character (\\u0000), which the database cannot store",
                          fix="remove it") from original
    if getattr(original, "sqlstate", None) == "22001":  # string_data_right_truncation
        raise RftkitError(f"a text value is longer than the database allows: {str(original).splitlines()[0]}",
                          fix="send a shorter one") from original


def add_missing_columns(engine: Engine) -> list[str]:
    """ALTER TABLE ... ADD COLUMN for columns this version has and the database lacks; their names."""
    inspector = inspect(engine)
    added = []
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(engine.dialect)
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
                    added.append(f"{table.name}.{column.name}")
    return added


def open_engine(url: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Engine:
    """An engine with the tables created. postgresql:// URLs use psycopg 3. On SQLite, a writer
    waits up to `busy_timeout_ms` for another's write lock."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000})
            event.listen(engine, "connect", partial(_sqlite_pragmas, busy_timeout_ms))
        else:
            engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        event.listen(engine, "handle_error", partial(_database_error, busy_timeout_ms))
        metadata.create_all(engine)
        add_missing_columns(engine)
    except ModuleNotFoundError as err:
        raise RftkitError(f"--db {url}: the driver is not installed ({err.name})",
                          fix="pip install 'rftkit[postgres]' for PostgreSQL") from None
    except Exception as err:  # noqa: BLE001 — any connection failure is the user's URL or server
        if type(err).__module__.startswith("sqlalchemy"):
            raise RftkitError(f"cannot open the database {url}: {str(err).splitlines()[0]}",
                              fix="check the URL and that the server is running") from None
        raise
    return engine
