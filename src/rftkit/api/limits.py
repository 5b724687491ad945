"""The limit on request bodies, enforced while they stream (an ASGI middleware).

FastAPI reads a multipart upload whole (spooling it to a temporary file) before the route sees
it, so a check in the route comes after the bytes are on disk. Here a declared Content-Length
over the limit answers 413 before a byte of the body is read, and a body without one (chunked)
answers 413 as soon as the bytes received pass the limit: the route stops reading there, and
uvicorn discards the rest. Either way OpenAI's error shape, code `file_too_large`.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rftkit.api.errors import error_response, too_large


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body passes the limit; the HTTP handler answers 413."""

    def __init__(self) -> None:
        super().__init__(413, "request body over the limit")


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int, shown_limit: int):
        self.app, self.limit, self.shown_limit = app, limit, shown_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refused = error_response(413, str(too_large("request body", self.shown_limit)), code="file_too_large")
        length = declared_length(scope)
        if length is not None and length > self.limit:
            refused.headers["Connection"] = "close"  # the body is never read
            return await refused(scope, receive, send)
        received, started = 0, False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:  # raised where no handler turned it into the answer
            if started:
                raise
            await refused(scope, receive, send)
