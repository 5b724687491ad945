"""`sql_execution`: run the sample's SQL and the reference SQL on a SQLite database, and
compare what they return (execution accuracy, as text-to-SQL benchmarks score it).

    {"type": "sql_execution", "name": "same rows", "database": "shop.sqlite",
     "input": "{{ sample.output_text }}", "reference": "{{ item.reference_sql }}"}

- The database opens read-only (`mode=ro`), and an authorizer allows reading only: any
  write, schema change, ATTACH, PRAGMA or transaction is refused before it runs, so the
  file cannot change, whatever the model writes. Only one statement runs.
- `time_limit_seconds` stops a runaway query (a recursive CTE with no end, a huge join)
  through SQLite's progress handler; `max_rows` caps what is fetched.
- Rows compare as multisets (`ordered: false`, the default) or as sequences; floats are
  rounded to `float_digits` decimal places first. Column names do not matter, values do.
- `partial_credit`: the F1 of the two multisets of rows instead of 1-or-0.

A sample whose SQL fails (syntax, refused, too slow) is a wrong answer: reward 0, with the
reason in the metadata's scores; only a failing reference is a grader error.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from pydantic import Field

from rftkit.errors import RftkitError
from rftkit.graders.base import Grader, GraderFailure, GraderSpec, Score, register
from rftkit.graders.paths import local_path
from rftkit.graders.templates import render
from rftkit.types import Grade, Sample

ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
FENCE = re.compile(r"```(?:sql|sqlite)?\s*\n?(.*?)```", re.DOTALL | re.IGNORECASE)


class SqlExecutionSpec(GraderSpec):
    type: Literal["sql_execution"]
    database: str
    input: str = "{{ sample.output_text }}"
    reference: str = "{{ item.reference_sql }}"
    ordered: bool = False
    partial_credit: bool = False
    time_limit_seconds: float = Field(2.0, gt=0)
    max_rows: int = Field(10_000, ge=1)
    float_digits: int = Field(6, ge=0)


class QueryFailed(Exception):
    """The SQL did not run to the end: refused, invalid, or over a limit."""


def extract_sql(text: str) -> str:
    """The SQL in a model's answer: a fenced block if there is one, without a final `;`.

    >>> extract_sql("Here:\\n```sql\\nSELECT 1;\\n```")
    'SELECT 1'
    """
    fenced = FENCE.search(text)
    sql = (fenced.group(1) if fenced else text).strip()
    return sql[:-1].rstrip() if sql.endswith(";") else sql


def _authorize(action, *_args) -> int:
    return sqlite3.SQLITE_OK if action in ALLOWED else sqlite3.SQLITE_DENY


def normalize(row: tuple, digits: int) -> tuple:
    return tuple(round(v, digits) if isinstance(v, float) else v for v in row)


def rows_f1(got: list[tuple], want: list[tuple]) -> float:
    """
    >>> rows_f1([(1,), (2,)], [(1,), (3,)])
    0.5
    """
    if not got and not want:
        return 1.0
    common = sum((Counter(got) & Counter(want)).values())
    return 2 * common / (len(got) + len(want))


@register("sql_execution")
class SqlExecution(Grader):
    spec_model = SqlExecutionSpec

    def __init__(self, spec: SqlExecutionSpec, context):
        super().__init__(spec, context)
        self.path = local_path(spec.database, context.base_dir, f"{self.name}: database")
        if not self.path.is_file():
            raise RftkitError(f"{self.name}: database: {self.path}: no such file",
                              fix="give the SQLite file's path, relative to the grader file or job")
        self.local = threading.local()
        self.connections: list[sqlite3.Connection] = []
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None
        self.reference_rows: dict[str, list[tuple]] = {}

    def connection(self) -> sqlite3.Connection:
        """One read-only connection per thread (sqlite3 connections are not shared)."""
        if getattr(self.local, "db", None) is None:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            db.set_authorizer(_authorize)
            self.local.db = db
            with self.lock:
                self.connections.append(db)
        return self.local.db

    def run(self, sql: str) -> list[tuple]:
        db = self.connection()
        deadline = time.monotonic() + self.spec.time_limit_seconds
        db.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            cursor = db.execute(sql)
            rows = cursor.fetchmany(self.spec.max_rows + 1)
        except sqlite3.Warning as err:  # "You can only execute one statement at a time."
            raise QueryFailed(str(err)) from None
        except sqlite3.Error as err:
            late = time.monotonic() > deadline
            raise QueryFailed(f"time limit of {self.spec.time_limit_seconds:g} s exceeded" if late else str(err)) from None
        finally:
            db.set_progress_handler(None, 0)
        if len(rows) > self.spec.max_rows:
            raise QueryFailed(f"more than max_rows={self.spec.max_rows} rows")
        return [normalize(tuple(r), self.spec.float_digits) for r in rows]

    def expected(self, sql: str) -> list[tuple]:
        if sql not in self.reference_rows:
            try:
                self.reference_rows[sql] = self.run(sql)
            except QueryFailed as err:
                raise GraderFailure("other_error", f"the reference SQL failed: {err}") from None
        return self.reference_rows[sql]

    def score(self, sample: Sample, item: dict) -> Score:
        want = self.expected(extract_sql(render(self.spec.reference, sample, item)))
        sql = extract_sql(render(self.spec.input, sample, item))
        try:
            got = self.run(sql)
        except QueryFailed as err:
            return Score(reward=0.0, scores={"sample_error": str(err)})
        if self.spec.partial_credit:
            reward = rows_f1(got, want)
        elif self.spec.ordered:
            reward = float(got == want)
        else:
            reward = float(Counter(got) == Counter(want))
        return Score(reward=reward, scores={"rows": len(got), "expected_rows": len(want)})

    def grade_many(self, samples: list[Sample], items: list[dict]) -> list[Grade]:
        # sqlite releases the GIL while a query runs: two threads use two cores. The threads
        # (and so their connections) live as long as the grader.
        with self.lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(2, "sql")
        return list(self.executor.map(self.grade, samples, items))

    def close(self) -> None:
        with self.lock:
            if self.executor is not None:
                self.executor.shutdown()
                self.executor = None
            for db in self.connections:
                db.close()
            self.connections.clear()
        self.local = threading.local()
