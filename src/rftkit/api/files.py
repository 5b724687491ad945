"""/v1/files: upload (validated on the spot, with line-numbered errors), list, get, delete, content."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from rftkit.api.auth import project
from rftkit.api.errors import too_large
from rftkit.api.shapes import file_object, page
from rftkit.data.validate import check_dataset
from rftkit.errors import RftkitError
from rftkit.jobs.store import new_id

router = APIRouter(prefix="/v1/files")
SUFFIXES = (".jsonl", ".json", ".parquet")
SQLITE_HEADER = b"SQLite format 3\x00"


def classify(path: Path, filename: str) -> tuple[str, int]:
    """(kind, rows): reinforcement when every row ends with the user's turn, supervised when every
    row ends with the assistant's; otherwise RftkitError listing the problems by line."""
    best = None
    for kind in ("reinforcement", "supervised"):
        checked = check_dataset(path, kind)
        if not checked.errors:
            return kind, len(checked.examples)
        if best is None or len(checked.errors) < len(best.errors):
            best = checked
    shown = "\n".join(str(p).replace(str(path), filename) for p in best.errors[:20])
    more = f"\n... and {len(best.errors) - 20} more" if len(best.errors) > 20 else ""
    raise RftkitError(f"{filename}: {len(best.errors)} problem(s) in {best.rows} rows:\n{shown}{more}")


def save_upload(upload: UploadFile, target: Path, limit: int) -> int:
    """Write an upload to `target`, refusing it past `limit` bytes (UploadTooLarge, 413); its size.
    The app's body limit has stopped a larger body already while it streamed; this holds the
    file itself to the exact limit (the body also carries the form's other fields)."""
    size = 0
    with target.open("wb") as out:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise too_large(str(upload.filename), limit)
            out.write(chunk)
    return size


def sqlite_tables(path: Path, filename: str) -> int:
    """The number of tables of an uploaded SQLite database; RftkitError when it is not one."""
    import sqlite3

    with path.open("rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise RftkitError(f"{filename}: not a SQLite database (purpose user_data takes SQLite files "
                              "that sql_execution graders open)")
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0])
    except sqlite3.Error as err:
        raise RftkitError(f"{filename}: the SQLite database cannot be read: {err}") from None


def _store_upload(service, owner: str, upload: UploadFile, purpose: str) -> dict:
    if purpose not in ("fine-tune", "user_data"):
        raise RftkitError(f"purpose: {purpose!r} is not supported",
                          fix="use 'fine-tune' for datasets, 'user_data' for a SQLite database a grader reads")
    default = "upload.jsonl" if purpose == "fine-tune" else "upload.sqlite"
    filename = os.path.basename(upload.filename or default) or default
    suffix = Path(filename).suffix if Path(filename).suffix in SUFFIXES else ".jsonl"
    file_id = new_id("file-")
    target = service.data_dir / "files" / (f"{file_id}{suffix}" if purpose == "fine-tune" else f"{file_id}.sqlite")
    try:
        size = save_upload(upload, target, service.settings.max_upload_bytes)
        if purpose == "fine-tune":
            kind, rows = classify(target, filename)
        else:  # a database: `rows` counts its tables
            kind, rows = None, sqlite_tables(target, filename)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return service.store.add_file(owner, id=file_id, filename=filename, purpose=purpose, bytes=size,
                                  path=str(target), kind=kind, rows=rows)


@router.post("")
async def upload_file(request: Request, file: UploadFile = File(...), purpose: str = Form(...),
                      owner: str = Depends(project)) -> dict:
    row = await run_in_threadpool(_store_upload, request.app.state.service, owner, file, purpose)
    return file_object(row)


@router.get("")
def list_files(request: Request, after: str | None = None, limit: int = Query(10000, ge=1, le=10000),
               purpose: str | None = None, owner: str = Depends(project)) -> dict:
    rows, more = request.app.state.service.store.list_files(owner, after, limit, purpose)
    return page([file_object(r) for r in rows], more)


@router.get("/{file_id}")
def retrieve_file(request: Request, file_id: str, owner: str = Depends(project)) -> dict:
    return file_object(request.app.state.service.store.file(owner, file_id))


@router.delete("/{file_id}")
def delete_file(request: Request, file_id: str, owner: str = Depends(project)) -> dict:
    row = request.app.state.service.store.delete_file(owner, file_id)
    Path(row["path"]).unlink(missing_ok=True)
    return {"id": file_id, "object": "file", "deleted": True}


@router.get("/{file_id}/content")
def file_content(request: Request, file_id: str, owner: str = Depends(project)) -> FileResponse:
    row = request.app.state.service.store.file(owner, file_id)
    return FileResponse(row["path"], filename=row["filename"], media_type="application/octet-stream")
