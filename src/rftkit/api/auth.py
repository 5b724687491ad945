"""Bearer keys: every /v1 route needs one and sees only its own project."""

from __future__ import annotations

from fastapi import Depends, Request
from sqlalchemy import select
from starlette.exceptions import HTTPException

from rftkit.jobs.db import api_keys
from rftkit.jobs.keys import KEY, project_of


def _bearer(request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def project(request: Request) -> str:
    """The caller's project, from `Authorization: Bearer <key>`; 401 without a valid key."""
    key = _bearer(request)
    if not key:
        raise HTTPException(401, "Missing API key: send 'Authorization: Bearer <key>' (see `rftkit keys create`)",
                            headers={"WWW-Authenticate": "Bearer"})
    found = project_of(request.app.state.service.store.engine, key)
    if found is None:
        raise HTTPException(401, "Incorrect API key provided", headers={"WWW-Authenticate": "Bearer"})
    return found


def key_name(request: Request, owner: str = Depends(project)) -> str:
    """Who is calling, for records such as a reviewer's name: the key's name when it has one
    (`rftkit keys create --name ann`), else its project."""
    match = KEY.match(_bearer(request))
    if match is None:  # the server's RFTKIT_API_KEY
        return owner
    with request.app.state.service.store.engine.connect() as conn:
        name = conn.execute(select(api_keys.c.name).where(api_keys.c.id == match.group(1))).scalar()
    return name or owner
