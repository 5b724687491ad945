"""/v1/fine_tuning/alpha/graders/run and /validate, on rftkit's graders engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.concurrency import run_in_threadpool

from rftkit.api.auth import project
from rftkit.errors import RftkitError
from rftkit.jobs.grader_files import for_project
from rftkit.jobs.validate import service_function_problems

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders")


def _context(request: Request):
    from rftkit.graders import GraderContext

    # every file a grader names is resolved by `for_project` first: no path is relative to anything;
    # every host it calls obeys the operator's rule (graders/network.py)
    return GraderContext(base_dir=Path("/nonexistent"), network=request.app.state.service.grader_network)


def _checked(request: Request, owner: str, grader: Any) -> dict:
    if not isinstance(grader, dict):
        raise RftkitError("grader: must be an object with a type")
    problems = service_function_problems(grader)
    if problems:
        raise RftkitError("; ".join(problems))
    service = request.app.state.service
    return for_project(grader, service.store, owner, service.data_dir, service.settings.grader_dirs)


def _run(context, grader: dict, model_sample: str, item: dict) -> dict:
    from rftkit.graders import build_grader
    from rftkit.types import Sample

    with build_grader(grader, context, source="grader") as scorer:
        result = scorer.grade(Sample(model_sample), item)
    usage = result.metadata.get("token_usage") or {}
    model = result.metadata.get("sampled_model_name")
    return {"reward": result.reward, "sub_rewards": result.sub_rewards, "metadata": result.metadata,
            "model_grader_token_usage_per_model": {model: usage} if model else {}}


@router.post("/run")
async def run_grader(request: Request, grader: Any = Body(...), model_sample: str = Body(...),
                     item: Any = Body(None), owner: str = Depends(project)) -> dict:
    if item is not None and not isinstance(item, dict):
        raise RftkitError("item: must be an object (the dataset row the grader reads as item)")
    return await run_in_threadpool(_run, _context(request), _checked(request, owner, grader), model_sample, item or {})


def _validate(context, grader: dict) -> dict:
    from rftkit.graders.validate import validate_grader

    problems = validate_grader(grader, context, source="grader")
    if problems:
        raise RftkitError("; ".join(problems))
    return {"grader": grader}


@router.post("/validate")
async def validate(request: Request, grader: Any = Body(..., embed=True), owner: str = Depends(project)) -> dict:
    return await run_in_threadpool(_validate, _context(request), _checked(request, owner, grader))
