"""Errors as OpenAI returns them: `{"error": {"message", "type", "param", "code"}}`.

RftkitError (a problem with the request) answers 400, its NotFound and the feedback store's
UnknownRecord 404, JobConflict and KeyReused 409, UploadTooLarge 413, DatabaseBusy (a write
lock held past the busy timeout) 503; a missing or bad key 401. A body over the limit answers
413 while it streams (api/limits.py).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rftkit.errors import RftkitError
from rftkit.feedback.records import UnknownRecord
from rftkit.jobs.db import DatabaseBusy
from rftkit.jobs.models import ModelNotDeletable
from rftkit.jobs.states import JobConflict
from rftkit.jobs.store import KeyReused, NotFound


class UploadTooLarge(RftkitError):
    """An uploaded file over `max_upload_bytes` (HTTP 413)."""


def too_large(what: str, limit: int) -> UploadTooLarge:
    """The error for `what` (a file name, or "request body") over the limit of `limit` bytes."""
    return UploadTooLarge(f"{what}: over the server's limit of {limit} bytes",
                          fix="upload a smaller file, or ask the operator to raise `rftkit serve --max-upload-bytes`")


def error_response(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                   param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _rftkit_error(_request: Request, err: RftkitError) -> JSONResponse:
    if isinstance(err, (NotFound, UnknownRecord)):
        return error_response(404, str(err), code="not_found")
    if isinstance(err, ModelNotDeletable):
        return error_response(403, str(err), code="model_not_deletable")
    if isinstance(err, UploadTooLarge):
        return error_response(413, str(err), code="file_too_large")
    if isinstance(err, DatabaseBusy):
        response = error_response(503, str(err), "server_error", code="database_busy")
        response.headers["Retry-After"] = "1"
        return response
    if isinstance(err, KeyReused):
        return error_response(409, str(err), code="idempotency_key_reused", param="Idempotency-Key")
    if isinstance(err, JobConflict):
        return error_response(409, str(err), code="invalid_state")
    return error_response(400, str(err))


def _http_error(request: Request, err: HTTPException) -> JSONResponse:
    if err.status_code == 413:  # the body limit, raised while the body streams
        limit = request.app.state.service.settings.max_upload_bytes
        return error_response(413, str(too_large("request body", limit)), code="file_too_large")
    kind = "authentication_error" if err.status_code == 401 else "invalid_request_error"
    response = error_response(err.status_code, str(err.detail), kind, code=kind if err.status_code == 401 else None)
    if err.headers:
        response.headers.update(err.headers)
    return response


def _validation_error(_request: Request, err: RequestValidationError) -> JSONResponse:
    first = err.errors()[0] if err.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    return error_response(400, f"{param or 'request'}: {first.get('msg', 'invalid request')}", param=param)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RftkitError, _rftkit_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
