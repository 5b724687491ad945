"""/v1/fine_tuning/jobs: create, list, retrieve, cancel, pause, resume, events, checkpoints —
plus rftkit's metrics, samples and summary for the dashboard."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool

from rftkit.api.auth import project
from rftkit.api.shapes import checkpoint_id, checkpoint_object, event_object, job_object, page
from rftkit.errors import RftkitError
from rftkit.jobs import runs
from rftkit.jobs.states import JobConflict
from rftkit.jobs.store import NotFound, now
from rftkit.jobs.validate import prepare_job

router = APIRouter(prefix="/v1/fine_tuning/jobs")
RECENT_STEPS = 20  # steps whose mean time estimates when a running job finishes
MAX_KEY_CHARS = 255  # the idempotency_keys.key column

MESSAGES = {
    "cancel": "Fine-tuning job cancelled",
    "pause": "Pause requested: the job stops after this step, with a checkpoint",
    "resume": "Resume requested: the job continues from its last checkpoint",
}


def _service(request: Request):
    return request.app.state.service


def _job(service, job: dict) -> dict:
    """The job as OpenAI's object; while it runs, with the time it should finish."""
    finish = None
    if job["status"] == "running":
        recent = service.store.metrics_rows(job["id"], last=RECENT_STEPS)
        finish = runs.estimate_finish(recent, job["total_steps"], now())
    return job_object(job, finish)


def _checked_key(key: str | None) -> str | None:
    """The Idempotency-Key header when it fits the store's column: 1-255 printable characters."""
    if key is not None and not (0 < len(key) <= MAX_KEY_CHARS and key.isprintable()):
        raise RftkitError(f"Idempotency-Key: 1 to {MAX_KEY_CHARS} printable characters",
                          fix="send a shorter key, such as a UUID")
    return key


def _create(service, owner: str, body: dict, key: str | None) -> dict:
    key = _checked_key(key)
    values = prepare_job(service.store, owner, body, service.data_dir, service.settings.grader_dirs,
                         service.settings.model_dirs, network=service.grader_network,
                         environment_dirs=service.settings.environment_dirs)
    job, _created = service.store.create_job(owner, values, key)
    return job


@router.post("")
async def create_job(request: Request, body: dict = Body(...), owner: str = Depends(project),
                     idempotency_key: str | None = Header(None)) -> dict:
    service = _service(request)
    return _job(service, await run_in_threadpool(_create, service, owner, body, idempotency_key))


@router.get("")
def list_jobs(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100),
              owner: str = Depends(project)) -> dict:
    service = _service(request)
    rows, more = service.store.list_jobs(owner, after, limit)
    return page([_job(service, r) for r in rows], more)


@router.get("/{job_id}")
def retrieve_job(request: Request, job_id: str, owner: str = Depends(project)) -> dict:
    service = _service(request)
    return _job(service, service.store.job(job_id, owner))


def _act(request: Request, job_id: str, owner: str, action: str) -> dict:
    service = _service(request)
    job = service.store.job(job_id, owner)
    if action == "pause" and job["spec"]["method"]["type"] != "reinforcement":
        raise JobConflict("only reinforcement jobs can pause (supervised runs have no checkpoints to resume)")
    return _job(service, service.store.change(job_id, action, MESSAGES[action], project=owner))


@router.post("/{job_id}/cancel")
def cancel_job(request: Request, job_id: str, owner: str = Depends(project)) -> dict:
    return _act(request, job_id, owner, "cancel")


@router.post("/{job_id}/pause")
def pause_job(request: Request, job_id: str, owner: str = Depends(project)) -> dict:
    return _act(request, job_id, owner, "pause")


@router.post("/{job_id}/resume")
def resume_job(request: Request, job_id: str, owner: str = Depends(project)) -> dict:
    return _act(request, job_id, owner, "resume")


@router.get("/{job_id}/events")
def list_events(request: Request, job_id: str, after: str | None = None, limit: int = Query(20, ge=1, le=1000),
                owner: str = Depends(project)) -> dict:
    store = _service(request).store
    store.job(job_id, owner)
    rows, more = store.list_events(job_id, after, limit)
    return page([event_object(r) for r in rows], more)


@router.get("/{job_id}/checkpoints")
def list_checkpoints(request: Request, job_id: str, after: str | None = None, limit: int = Query(10, ge=1, le=100),
                     owner: str = Depends(project)) -> dict:
    job = _service(request).store.job(job_id, owner)
    found = runs.checkpoints(Path(job["run_dir"]))
    if after is not None:
        ids = [checkpoint_id(job, c["step"]) for c in found]
        if after not in ids:
            raise NotFound(f"no checkpoint {after!r}")
        found = found[ids.index(after) + 1:]
    return page([checkpoint_object(job, c) for c in found[:limit]], len(found) > limit)


@router.get("/{job_id}/metrics")
def job_metrics(request: Request, job_id: str, owner: str = Depends(project)) -> dict:
    """rftkit: every step's flat metrics row, in step order (for charts)."""
    store = _service(request).store
    store.job(job_id, owner)
    return {"object": "list", "data": store.metrics_rows(job_id), "has_more": False}


@router.get("/{job_id}/samples")
def job_samples(request: Request, job_id: str, step: int | None = None, split: str | None = None,
                limit: int = Query(200, ge=1, le=2000), owner: str = Depends(project)) -> dict:
    """rftkit: graded samples of one step and split (baseline, train, valid, final)."""
    job = _service(request).store.job(job_id, owner)
    run_dir = Path(job["run_dir"])
    steps = runs.sample_steps(run_dir)
    if step is None and split is None and steps:
        split = "train" if "train" in steps else next(iter(steps))
        step = steps[split][-1]
    rows = runs.samples(run_dir, step, split, limit)
    return {"object": "list", "data": rows, "has_more": False, "steps": steps, "step": step, "split": split}


@router.get("/{job_id}/summary")
def job_summary(request: Request, job_id: str, owner: str = Depends(project)) -> dict:
    """rftkit: the baseline check, the final evaluation and the run's summary, when written."""
    job = _service(request).store.job(job_id, owner)
    run_dir = Path(job["run_dir"])
    return {name: runs.read_json(run_dir / f"{name}.json") for name in ("baseline", "final", "summary")}
