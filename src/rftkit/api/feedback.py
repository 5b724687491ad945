"""/v1/feedback: comparison items, reviewers' judgements, AI pre-labels, agreement, JSONL in and out.

Each key's project has its own feedback: a FeedbackStore scoped to the project, on the
service's database. A judgement's reviewer defaults to the key's name (else its project).
Reading files and calling a judge run in worker threads, so the event loop keeps serving.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile as FormFile

from rftkit.api.auth import key_name, project
from rftkit.api.files import save_upload
from rftkit.api.shapes import page
from rftkit.errors import RftkitError
from rftkit.feedback import ComparisonItem, FeedbackStore, Judgement
from rftkit.feedback.records import now_iso
from rftkit.feedback.samples import item_from_sample_lines, items_from_rows, items_from_samples, read_items_jsonl

router = APIRouter(prefix="/v1/feedback")
DEFAULT_CRITERIA = ("accuracy", "helpfulness", "safety")  # what a project's first store starts with
JUDGE_TYPES = ("score_model", "label_model")
_stores_lock = threading.Lock()
T = TypeVar("T")


def feedback_store(request: Request, owner: str = Depends(project)) -> FeedbackStore:
    """The caller's project's store, made once per project and process."""
    state = request.app.state
    with _stores_lock:
        if not hasattr(state, "feedback_stores"):
            state.feedback_stores = {}
        if owner not in state.feedback_stores:
            store = FeedbackStore(state.service.store.engine, project=owner)
            if not store.criteria():
                for name in DEFAULT_CRITERIA:
                    store.add_criterion(name)
            state.feedback_stores[owner] = store
        return state.feedback_stores[owner]


# ----------------------------------------------------------------------------- shapes


def item_object(item: ComparisonItem) -> dict:
    return {"id": item.item_id, "object": "feedback.item", "prompt": item.prompt, "source": item.source,
            "answers": [{"text": a.text, "sample_ref": a.sample_ref} for a in item.answers]}


def judgement_object(judgement: Judgement) -> dict:
    return {"id": judgement.judgement_id, "object": "feedback.judgement", "item_id": judgement.item_id,
            "reviewer": judgement.reviewer, "source": judgement.source, "status": judgement.status,
            "created_at": judgement.created_at, "preferred": judgement.preferred, "ratings": judgement.ratings,
            "unsafe": judgement.unsafe, "comment": judgement.comment, "based_on": judgement.based_on}


def added_object(items: list[ComparisonItem], added: list[str]) -> dict:
    return {"object": "feedback.items_added", "added": added,
            "skipped": [i.item_id for i in items if i.item_id not in added]}


# ----------------------------------------------------------------------------- files with server paths


@contextmanager
def named(path: Path, name: str) -> Iterator[None]:
    """Errors that name `name` where they would name the server's `path`."""
    try:
        yield
    except RftkitError as err:
        raise RftkitError(str(err).replace(str(path), name)) from None


def renamed(items: list[ComparisonItem], path: Path, name: str) -> list[ComparisonItem]:
    """Items whose source and sample refs name `name` instead of the server's `path`."""
    swap = lambda text: text.replace(str(path), name) if text else text  # noqa: E731
    return [replace(i, source=swap(i.source), answers=[replace(a, sample_ref=swap(a.sample_ref)) for a in i.answers])
            for i in items]


def with_upload(request: Request, upload: FormFile, use: Callable[[Path, str], T]) -> T:
    """`use(path, name)` on the upload saved to a temporary file of the server's naming; `name`,
    the client's file name, is only ever text in messages and sources, never part of a path."""
    name = os.path.basename(upload.filename or "") or "upload.jsonl"
    with tempfile.TemporaryDirectory(prefix="rftkit-feedback-") as folder:
        path = Path(folder) / "upload.jsonl"
        with named(path, name):
            save_upload(upload, path, request.app.state.service.settings.max_upload_bytes)
            return use(path, name)


def upload_items(request: Request, upload: FormFile) -> list[ComparisonItem]:
    items = with_upload(request, upload, lambda path, name: renamed(read_items_jsonl(path), path, name))
    if not items:
        raise RftkitError(f"{upload.filename}: no items", fix='give one {"prompt", "answers"} object per line')
    return items


# ----------------------------------------------------------------------------- items


def json_items(raw: bytes) -> list:
    """The `items` list of a JSON body."""
    try:
        body = json.loads(raw or b"null")
    except ValueError as err:
        raise RftkitError(f"request body: invalid JSON ({err})") from None
    rows = body.get("items") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not rows:
        raise RftkitError('items: give a non-empty list of {"prompt", "answers"} objects',
                          fix="or upload an items JSONL file as the form field 'file'")
    return rows


@router.post("/items")
async def add_items(request: Request, store: FeedbackStore = Depends(feedback_store)) -> dict:
    """A JSON body {"items": [{"item_id"?, "prompt", "answers"}]}, or an items JSONL file
    uploaded as the multipart form field `file`."""
    if request.headers.get("content-type", "").startswith("multipart/"):
        upload = (await request.form()).get("file")
        if not isinstance(upload, FormFile):  # FastAPI's UploadFile is one too
            raise RftkitError("file: attach the items JSONL as the form field 'file'")
        items = await run_in_threadpool(upload_items, request, upload)
    else:
        items = items_from_rows(json_items(await request.body()), "api")
    return added_object(items, await run_in_threadpool(store.add_items, items))


class FromSamples(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job: str = Field(description="A fine-tuning job of this project; its run's samples.jsonl is read.")
    lines: list[int] | None = Field(None, description="Exactly these sample lines (1-based) as one item.")
    split: str | None = Field(None, description="Only samples of this split (train, valid, baseline, final).")
    step: int | None = Field(None, description="Only samples of this step.")


def items_of_job(run_dir: Path, body: FromSamples) -> list[ComparisonItem]:
    path, name = run_dir / "samples.jsonl", f"{body.job}/samples.jsonl"
    with named(path, name):
        if body.lines:
            items = [item_from_sample_lines(path, body.lines, prefix=body.job)]
        else:
            items = items_from_samples(path, split=body.split, step=body.step, prefix=body.job)
    if not items:
        raise RftkitError(f"{name}: no prompt has 2 or more distinct answers yet", fix="wait for more steps")
    return renamed(items, path, name)


@router.post("/items/from_samples")
def add_items_from_samples(request: Request, body: FromSamples, owner: str = Depends(project),
                           store: FeedbackStore = Depends(feedback_store)) -> dict:
    """One item per prompt group of the job's samples (or one from chosen lines); items
    already added from the job are skipped, so this can be called again as the job runs."""
    job = request.app.state.service.store.job(body.job, owner)
    items = items_of_job(Path(job["run_dir"]), body)
    return added_object(items, store.add_items(items, skip_existing=True))


@router.get("/items")
def list_items(pending_for: str | None = None, after: str | None = None, limit: int = Query(20, ge=1, le=1000),
               store: FeedbackStore = Depends(feedback_store)) -> dict:
    """Items in the order added; `pending_for=NAME`: those NAME has not judged yet."""
    found = store.items(pending_for=pending_for, after=after, limit=limit + 1)
    return page([item_object(i) for i in found[:limit]], len(found) > limit)


@router.get("/items/{item_id:path}")
def retrieve_item(item_id: str, store: FeedbackStore = Depends(feedback_store)) -> dict:
    """The item with every judgement of it, AI pre-labels included."""
    item = item_object(store.get_item(item_id))
    return {**item, "judgements": [judgement_object(j) for j in store.judgements(item_id=item_id, status=None)]}


# ----------------------------------------------------------------------------- judgements


class JudgementBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reviewer: str | None = Field(None, description="Default: the key's name, else its project.")
    preferred: int | None = Field(None, description="Index of the better answer; null: no preference.")
    ratings: list[dict[str, Any]] = Field([], description="Per answer, {criterion: 1..5}.")
    unsafe: list[bool] = Field([], description="Per answer, whether it is unsafe.")
    comment: str = ""


@router.post("/items/{item_id:path}/judgements")
def add_judgement(item_id: str, body: JudgementBody, reviewer: str = Depends(key_name),
                  store: FeedbackStore = Depends(feedback_store)) -> dict:
    judgement = Judgement(item_id=item_id, reviewer=body.reviewer or reviewer, preferred=body.preferred,
                          ratings=body.ratings, unsafe=body.unsafe, comment=body.comment, created_at=now_iso())
    return judgement_object(store.judgement(store.record_judgement(judgement)))


class ConfirmBody(BaseModel):
    """Fields given correct the pre-label; none confirms it as it is."""

    model_config = ConfigDict(extra="forbid")
    reviewer: str | None = None
    preferred: int | None = None
    ratings: list[dict[str, Any]] | None = None
    unsafe: list[bool] | None = None
    comment: str | None = None


@router.post("/judgements/{judgement_id}/confirm")
def confirm_prelabel(judgement_id: int, body: ConfirmBody | None = None, reviewer: str = Depends(key_name),
                     store: FeedbackStore = Depends(feedback_store)) -> dict:
    corrections = (body or ConfirmBody()).model_dump(exclude_unset=True)
    name = corrections.pop("reviewer", None) or reviewer
    return judgement_object(store.judgement(store.confirm(judgement_id, name, **corrections)))


class PrelabelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grader: dict[str, Any] = Field(description="A score_model or label_model grader (the judge).")
    criterion: str | None = Field(None, description="The criterion the judge's score rates (added if new).")
    unsafe_below: float | None = Field(None, description="Flag answers the judge scores below this (0-1).")
    limit: int = Field(100, ge=1, le=1000, description="Most items to label in this call.")


def run_prelabel(store: FeedbackStore, body: PrelabelBody, data_dir: Path, network) -> dict:
    from rftkit.feedback.prelabel import prelabel
    from rftkit.graders import GraderContext

    result = prelabel(store, body.grader, criterion=body.criterion, unsafe_below=body.unsafe_below,
                      context=GraderContext(base_dir=data_dir, network=network), limit=body.limit)
    return {"object": "feedback.prelabel", "judgement_ids": result.judgement_ids, "skipped": result.skipped}


@router.post("/prelabel")
async def prelabel_items(request: Request, body: PrelabelBody, store: FeedbackStore = Depends(feedback_store)) -> dict:
    """An AI judge labels items it has not labelled yet (the judge endpoint: RFTKIT_JUDGE_BASE_URL)."""
    if body.grader.get("type") not in JUDGE_TYPES:
        raise RftkitError(f"grader.type: {body.grader.get('type')!r} cannot pre-label",
                          fix=f"use a judge: {' or '.join(JUDGE_TYPES)}")
    service = request.app.state.service
    return await run_in_threadpool(run_prelabel, store, body, service.data_dir, service.grader_network)


@router.get("/agreement")
def agreement(store: FeedbackStore = Depends(feedback_store)) -> dict:
    """Between reviewers, and between the AI judge and people (docs/feedback.md)."""
    return {"object": "feedback.agreement", **store.agreement()}


# ----------------------------------------------------------------------------- files and criteria


@router.get("/export")
def export(include_ai: bool = False, owner: str = Depends(project),
           store: FeedbackStore = Depends(feedback_store)) -> Response:
    """Final judgements as a feedback JSONL download (what `rftkit rm train --feedback` reads)."""
    return Response(store.to_jsonl(include_ai=include_ai), media_type="application/jsonl",
                    headers={"Content-Disposition": f'attachment; filename="feedback-{owner}.jsonl"'})


@router.post("/import")
async def import_feedback(request: Request, file: UploadFile = File(...),
                          store: FeedbackStore = Depends(feedback_store)) -> dict:
    """A feedback JSONL file, all or nothing; every bad line is named."""
    imported = await run_in_threadpool(with_upload, request, file,
                                       lambda path, name: store.import_jsonl(path, name=name))
    return {"object": "feedback.import", "imported": imported}


def criteria_page(store: FeedbackStore, reviewer: str) -> dict:
    data = [{"id": name, "object": "feedback.criterion", "name": name, "description": description}
            for name, description in store.describe_criteria().items()]
    return page(data, False, reviewer=reviewer)


class CriterionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""


@router.get("/criteria")
def list_criteria(reviewer: str = Depends(key_name), store: FeedbackStore = Depends(feedback_store)) -> dict:
    """The criteria answers are rated on; `reviewer` is the name judgements get by default."""
    return criteria_page(store, reviewer)


@router.post("/criteria")
def add_criterion(body: CriterionBody, reviewer: str = Depends(key_name),
                  store: FeedbackStore = Depends(feedback_store)) -> dict:
    store.add_criterion(body.name, body.description)
    return criteria_page(store, reviewer)
