"""Every query of the service: files, jobs, their events, idempotency keys.

Each method is one transaction. A job's status only changes through `change`, a
compare-and-set on the status it read, so the API (cancel, pause, resume) and the worker
(start, finish) can never both win a race: the loser gets JobConflict (HTTP 409).
An idempotency key is stored with the SHA-256 of the canonical request body: the same key
with the same body returns the first job, with another body KeyReused (HTTP 409), as OpenAI
answers. Events that came from a run's events.jsonl are marked `from_run`; when a run resumes from
checkpoint N they are rewound to step N exactly as the file is, so no step's metrics are
lost or counted twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from typing import Any, Iterable

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from rftkit.errors import RftkitError
from rftkit.jobs.db import events, files, idempotency_keys, jobs
from rftkit.jobs.states import JobConflict, transition


class NotFound(RftkitError):
    """No such object in the caller's project (HTTP 404)."""


# what an id the service made can look like (`ftjob-<hex>`, `file-<hex>`; tests use shorter ones):
# anything else is no such object, answered before it reaches a query (PostgreSQL refuses NUL)
ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class KeyReused(RftkitError):
    """An idempotency key sent again with a different request body (HTTP 409)."""


def now() -> int:
    return int(time.time())


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def checked_id(value: Any, what: str) -> str:
    """`value` when it can be an id; NotFound (404, as for any unknown id) otherwise."""
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise NotFound(f"no {what} {str(value)[:80]!r}")
    return value


def event_id(seq: int) -> str:
    return f"ftevent-{seq:010d}"


def _seq_of_event(event: str) -> int:
    digits = event.removeprefix("ftevent-")
    if not re.fullmatch(r"[0-9]{1,18}", digits):  # beyond 18 digits SQLite's integers overflow
        raise NotFound(f"no event {event[:80]!r}")
    return int(digits)


def body_digest(body: Any) -> str:
    """SHA-256 of the request body in canonical JSON: key order and spacing do not count.

    >>> body_digest({"a": 1, "b": [2]}) == body_digest({"b": [2], "a": 1})
    True
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _train_tokens(data: Any) -> int:
    """The tokens one metrics event's step trained on (its row's `train_tokens`; 0 without one)."""
    row = data.get("metrics", data) if isinstance(data, dict) else {}
    tokens = row.get("train_tokens") if isinstance(row, dict) else None
    return int(tokens) if isinstance(tokens, (int, float)) else 0


def _page(conn: Connection, query, seq_column, after_seq: int | None, limit: int) -> tuple[list[dict], bool]:
    """Newest first, strictly older than `after_seq`, at most `limit` rows, and whether more exist."""
    if after_seq is not None:
        query = query.where(seq_column < after_seq)
    rows = conn.execute(query.order_by(seq_column.desc()).limit(limit + 1)).mappings().all()
    return [dict(r) for r in rows[:limit]], len(rows) > limit


class Store:
    def __init__(self, engine: Engine):
        self.engine = engine

    # ------------------------------------------------------------------ files

    def add_file(self, project: str, **values: Any) -> dict:
        row = {"id": new_id("file-"), "project": project, "created_at": now(), **values}
        with self.engine.begin() as conn:
            conn.execute(insert(files).values(**row))
        return row

    def file(self, project: str, file_id: str) -> dict:
        checked_id(file_id, "file")
        with self.engine.connect() as conn:
            row = conn.execute(select(files).where(files.c.id == file_id, files.c.project == project)).mappings().first()
        if row is None:
            raise NotFound(f"no file {file_id!r}")
        return dict(row)

    def list_files(self, project: str, after: str | None, limit: int, purpose: str | None) -> tuple[list[dict], bool]:
        with self.engine.connect() as conn:
            query = select(files).where(files.c.project == project)
            if purpose:
                query = query.where(files.c.purpose == purpose)
            after_seq = self.file(project, after)["seq"] if after else None
            return _page(conn, query, files.c.seq, after_seq, limit)

    def delete_file(self, project: str, file_id: str) -> dict:
        row = self.file(project, file_id)
        with self.engine.begin() as conn:
            conn.execute(delete(files).where(files.c.id == file_id))
        return row

    # ------------------------------------------------------------------ jobs

    def create_job(self, project: str, values: dict, idempotency_key: str | None = None) -> tuple[dict, bool]:
        """(job, created). With an idempotency key seen before, the earlier job and False when
        `values["body"]` is the body sent then; KeyReused when it is another."""
        digest = body_digest(values.get("body"))
        if idempotency_key:
            earlier = self._job_for_key(project, idempotency_key, digest)
            if earlier is not None:
                return earlier, False
        row = {"project": project, "status": "validating_files", "created_at": now(), "events_offset": 0,
               "steps_done": 0, "attempts": 0, **values}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(jobs).values(**row))
                if idempotency_key:
                    conn.execute(insert(idempotency_keys).values(
                        project=project, key=idempotency_key, job_id=row["id"], created_at=row["created_at"],
                        body_sha256=digest))
                self._event(conn, row["id"], "Validating training file")
                # read inside the transaction: the job as created, before the supervisor can validate it
                created = dict(conn.execute(select(jobs).where(jobs.c.id == row["id"])).mappings().one())
        except IntegrityError:  # the same key in a concurrent request: that one created the job
            earlier = self._job_for_key(project, idempotency_key, digest) if idempotency_key else None
            if earlier is None:
                raise
            return earlier, False
        return created, True

    def _job_for_key(self, project: str, key: str, digest: str) -> dict | None:
        """The job created with `key`, if any; KeyReused when it was created from another body.
        A key stored before bodies were hashed (no digest) matches any body, as it did then."""
        with self.engine.connect() as conn:
            found = conn.execute(select(idempotency_keys.c.job_id, idempotency_keys.c.body_sha256).where(
                idempotency_keys.c.project == project, idempotency_keys.c.key == key)).first()
        if found is None:
            return None
        if found.body_sha256 is not None and found.body_sha256 != digest:
            raise KeyReused(f"Idempotency-Key {key!r} was used with a different request body (job {found.job_id})",
                            fix="send the same body to get that job again, or a new key for a new job")
        return self.job(found.job_id)

    def job(self, job_id: str, project: str | None = None) -> dict:
        """The job; NotFound when it does not exist or belongs to another project."""
        checked_id(job_id, "fine-tuning job")
        query = select(jobs).where(jobs.c.id == job_id)
        if project is not None:
            query = query.where(jobs.c.project == project)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"no fine-tuning job {job_id!r}")
        return dict(row)

    def list_jobs(self, project: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        after_seq = self.job(after, project)["seq"] if after else None
        with self.engine.connect() as conn:
            return _page(conn, select(jobs).where(jobs.c.project == project), jobs.c.seq, after_seq, limit)

    def jobs_with_status(self, statuses: Iterable[str]) -> list[dict]:
        """Across projects, oldest first (the order the queue runs in)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.status.in_(list(statuses))).order_by(jobs.c.seq))
            return [dict(r) for r in rows.mappings()]

    def find_model(self, project: str, name: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.project == project, jobs.c.fine_tuned_model == name)).mappings().first()
        return dict(row) if row else None

    def base_models(self, project: str) -> list[tuple[str, int]]:
        """(model, first use) for every base model the project's jobs named."""
        seen: dict[str, int] = {}
        for _, model, created in self.jobs_by_base_model(project):
            seen.setdefault(model, created)
        return list(seen.items())

    def jobs_by_base_model(self, project: str) -> list[tuple[str, str, int]]:
        """(job id, the base model its spec names: a resolved path or a hub name, created_at),
        oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.id, jobs.c.spec, jobs.c.created_at)
                                .where(jobs.c.project == project).order_by(jobs.c.seq))
            return [(job_id, spec["model"], created) for job_id, spec, created in rows]

    def change(self, job_id: str, action: str, message: str | None = None, *, project: str | None = None,
               level: str = "info", **values: Any) -> dict:
        """Apply `action` to the job's status (compare-and-set), with `values` and an event."""
        checked_id(job_id, "fine-tuning job")
        with self.engine.begin() as conn:
            query = select(jobs.c.status).where(jobs.c.id == job_id)
            if project is not None:
                query = query.where(jobs.c.project == project)
            status = conn.execute(query).scalar()
            if status is None:
                raise NotFound(f"no fine-tuning job {job_id!r}")
            new = transition(status, action)
            if new in ("succeeded", "failed", "cancelled"):
                values.setdefault("finished_at", now())
            done = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == status)
                                .values(status=new, **values))
            if done.rowcount != 1:
                raise JobConflict(f"the job changed status while it was being {action}ed; retry")
            if message:
                self._event(conn, job_id, message, level=level)
        return self.job(job_id)

    def update_job(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

    # ------------------------------------------------------------------ events

    @staticmethod
    def _event(conn: Connection, job_id: str, message: str, *, level: str = "info", type: str = "message",
               step: int | None = None, data: Any = None, from_run: bool = False, created_at: int | None = None) -> None:
        conn.execute(insert(events).values(job_id=job_id, created_at=created_at or now(), level=level, type=type,
                                           message=message, step=step, data=data, from_run=from_run))

    def add_event(self, job_id: str, message: str, **fields: Any) -> None:
        with self.engine.begin() as conn:
            self._event(conn, job_id, message, **fields)

    def ingest(self, job_id: str, rows: list[dict], offset: int, **values: Any) -> None:
        """Add events read from the run's events.jsonl and move the read offset, atomically;
        add the tokens their steps trained on to the job's `trained_tokens`."""
        trained = [_train_tokens(r.get("data")) for r in rows if r.get("type") == "metrics"]
        if trained:
            values["trained_tokens"] = func.coalesce(jobs.c.trained_tokens, 0) + sum(trained)
        with self.engine.begin() as conn:
            for row in rows:
                self._event(conn, job_id, from_run=True, **row)
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(events_offset=offset, **values))

    def rewind_events(self, job_id: str, step: int | None, offset: int) -> int:
        """Drop run events after `step` (all of them when None), as the resumed run drops them
        from its file; set the read offset to the rewritten file's size. Returns rows dropped."""
        condition = and_(events.c.job_id == job_id, events.c.from_run.is_(True))
        if step is not None:
            condition = and_(condition, events.c.step.is_not(None), events.c.step > step)
        with self.engine.begin() as conn:
            dropped = conn.execute(delete(events).where(condition)).rowcount
            kept = conn.execute(select(events.c.data).where(events.c.job_id == job_id, events.c.type == "metrics"))
            tokens = [_train_tokens(data) for data in kept.scalars()]
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                events_offset=offset, trained_tokens=sum(tokens) if tokens else None))
        return dropped

    def list_events(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict], bool]:
        after_seq = _seq_of_event(after) if after else None
        with self.engine.connect() as conn:
            return _page(conn, select(events).where(events.c.job_id == job_id), events.c.seq, after_seq, limit)

    def metrics_rows(self, job_id: str, last: int | None = None) -> list[dict]:
        """The flat metrics.jsonl row of every metrics event (the `last` ones only), in step order,
        each with `created_at`, the time its event was written."""
        query = select(events.c.data, events.c.created_at).where(events.c.job_id == job_id, events.c.type == "metrics")
        with self.engine.connect() as conn:
            if last is None:
                found = conn.execute(query.order_by(events.c.step, events.c.seq)).all()
            else:
                found = conn.execute(query.order_by(events.c.step.desc(), events.c.seq.desc()).limit(last)).all()[::-1]
        return [{**data.get("metrics", data), "created_at": created} for data, created in found if isinstance(data, dict)]

    def count_events(self, job_id: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(events).where(events.c.job_id == job_id)).scalar()
