"""API keys: `rftk_<id>_<secret>`, stored as the SHA-256 of the whole key.

A key is 32 random bytes, so a fast hash is enough (nothing to brute-force); the stored hash
is compared with `hmac.compare_digest`, in constant time. The id part finds the row, so a
lookup never scans or compares against other keys. `RFTKIT_API_KEY` from the server's
environment is accepted too, for the "default" project.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from rftkit.errors import RftkitError
from rftkit.jobs.db import api_keys
from rftkit.jobs.store import NotFound, now

DEFAULT_PROJECT = "default"
ENV_KEY = "RFTKIT_API_KEY"
KEY = re.compile(r"^rftk_([0-9a-f]{12})_[A-Za-z0-9_-]{20,}$")
PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class KeyInfo:
    id: str
    project: str
    name: str
    created_at: int
    revoked_at: int | None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: Engine, project: str = DEFAULT_PROJECT, name: str = "") -> tuple[str, KeyInfo]:
    """(the key, shown once, never stored; its info)."""
    if not PROJECT.match(project):
        raise RftkitError(f"project {project!r}: use letters, digits, '_', '.', '-' (at most 64)")
    key_id = secrets.token_hex(6)
    key = f"rftk_{key_id}_{secrets.token_urlsafe(32)}"
    info = KeyInfo(key_id, project, name, now(), None)
    with engine.begin() as conn:
        conn.execute(insert(api_keys).values(id=key_id, project=project, name=name, secret_hash=_digest(key),
                                             created_at=info.created_at))
    return key, info


def list_keys(engine: Engine) -> list[KeyInfo]:
    with engine.connect() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings().all()
    return [KeyInfo(r["id"], r["project"], r["name"], r["created_at"], r["revoked_at"]) for r in rows]


def revoke_key(engine: Engine, key_id: str) -> None:
    with engine.begin() as conn:
        done = conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                            .values(revoked_at=now())).rowcount
    if done != 1:
        raise NotFound(f"no active key {key_id!r}", fix="see `rftkit keys list`")


def any_keys(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)).first() is not None


def project_of(engine: Engine, key: str) -> str | None:
    """The project a presented key belongs to, or None when it is not a valid, active key."""
    env_key = os.environ.get(ENV_KEY)
    if env_key and hmac.compare_digest(key.encode(), env_key.encode()):
        return DEFAULT_PROJECT
    match = KEY.match(key)
    if match is None:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(api_keys.c.project, api_keys.c.secret_hash).where(
            api_keys.c.id == match.group(1), api_keys.c.revoked_at.is_(None))).first()
    if row is None or not hmac.compare_digest(_digest(key), row.secret_hash):
        return None
    return row.project
