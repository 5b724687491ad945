"""The dashboard: a hand-written page (HTML, CSS, JS, inline SVG charts) shipped in the package.

It calls the same /v1 routes as any client, with the key the user enters (kept in the
browser's localStorage; `/#key=...` sets it, as `rftkit serve` prints on start).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from starlette.exceptions import HTTPException

router = APIRouter()
STATIC = resources.files("rftkit.api") / "static"
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"), headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    path = STATIC / name
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    if "/" in name or ".." in name or suffix not in TYPES or not path.is_file():
        raise HTTPException(404, f"no asset {name!r}")
    return FileResponse(str(path), media_type=TYPES[suffix], headers={"Cache-Control": "no-cache"})
