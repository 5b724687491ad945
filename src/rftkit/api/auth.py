"""Bearer keys: every /v1 route needs one and sees only its own project."""

from __future__ import annotations

from fastapi import Request
from starlette.exceptions import HTTPException

from rftkit.jobs.keys import project_of


def project(request: Request) -> str:
    """The caller's project, from `Authorization: Bearer <key>`; 401 without a valid key."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "Missing API key: send 'Authorization: Bearer <key>' (see `rftkit keys create`)",
                            headers={"WWW-Authenticate": "Bearer"})
    found = project_of(request.app.state.service.store.engine, key.strip())
    if found is None:
        raise HTTPException(401, "Incorrect API key provided", headers={"WWW-Authenticate": "Bearer"})
    return found
