"""/v1/models and /v1/chat/completions: base models, fine-tuned models and their checkpoints."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from rftkit.api import stream
from rftkit.api.auth import project
from rftkit.api.completions import refuse_response_format, sampling, served_model
from rftkit.api.errors import error_response
from rftkit.api.shapes import model_object
from rftkit.errors import RftkitError
from rftkit.jobs import runs
from rftkit.jobs.models import checkpoint_name, local_models
from rftkit.jobs.models import delete_model as remove_model
from rftkit.jobs.store import NotFound
from rftkit.serving.client import WorkerFailed

router = APIRouter(prefix="/v1")


def all_models(service, owner: str) -> list[dict]:
    """Base models (DATA_DIR/models and those jobs named), fine-tuned models, their checkpoints."""
    found = {name: model_object(name, 0, "rftkit") for name in local_models(service.data_dir)}
    for name, created in service.store.base_models(owner):
        found.setdefault(name, model_object(name, created, "rftkit"))
    jobs, _ = service.store.list_jobs(owner, None, 1000)
    for job in jobs:
        if job["fine_tuned_model"] and (Path(job["run_dir"]) / "model").is_dir():  # not deleted
            found[job["fine_tuned_model"]] = model_object(job["fine_tuned_model"], job["finished_at"] or 0, owner)
        for checkpoint in runs.checkpoints(Path(job["run_dir"])):
            if not checkpoint["model_dir"].is_dir():
                continue
            name = checkpoint_name(job, checkpoint["step"])
            found[name] = model_object(name, checkpoint["created_at"], owner)
    return list(found.values())


@router.get("/models")
def list_models(request: Request, owner: str = Depends(project)) -> dict:
    return {"object": "list", "data": all_models(request.app.state.service, owner)}


@router.get("/models/{model:path}")
def retrieve_model(request: Request, model: str, owner: str = Depends(project)) -> dict:
    for found in all_models(request.app.state.service, owner):
        if found["id"] == model:
            return found
    raise NotFound(f"The model '{model}' does not exist")


@router.delete("/models/{model:path}")
def delete_model(request: Request, model: str, owner: str = Depends(project)) -> dict:
    """A fine-tuned model or checkpoint (its weights; the job stays). Base models answer 403."""
    service = request.app.state.service
    remove_model(service.store, owner, model, service.data_dir)
    return {"id": model, "object": "model", "deleted": True}


def _text(content: Any, at: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise RftkitError(f"{at}.content: only text is supported")


def _messages(messages: Any) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise RftkitError("messages: a non-empty list of {role, content}")
    clean = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant"):
            raise RftkitError(f"messages[{index}].role: one of system, developer, user, assistant")
        role = "system" if message["role"] == "developer" else message["role"]
        clean.append({"role": role, "content": _text(message.get("content", ""), f"messages[{index}]")})
    return clean


def _worker_request(service, owner: str, body: dict, stream: bool) -> dict:
    """What the inference worker is asked; checks the body and resolves the model first."""
    if body.get("top_logprobs"):
        raise RftkitError("top_logprobs: alternatives are not computed; logprobs: true gives the sampled tokens'")
    if body.get("logprobs") and stream:
        raise RftkitError("logprobs: not with stream: true")
    refuse_response_format(body)
    return {"model_path": served_model(service, owner, str(body.get("model") or "")),
            "messages": _messages(body.get("messages")), **sampling(body), "stream": stream}


def _logprobs(choice: dict) -> dict:
    """OpenAI's chat `logprobs` of one choice: each sampled token, its log-prob and its UTF-8 bytes."""
    content = [{"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8")), "top_logprobs": []}
               for token, logprob in zip(choice["tokens"], choice["logprobs"])]
    return {"content": content, "refusal": None}


def _head(body: dict) -> dict:
    return {"id": f"chatcmpl-{secrets.token_hex(12)}", "created": int(time.time()), "model": str(body.get("model"))}


def _complete(service, owner: str, body: dict) -> dict:
    reply = service.serving.complete(_worker_request(service, owner, body, stream=False))
    choices = [{"index": i, "message": {"role": "assistant", "content": c["text"], "refusal": None},
                "finish_reason": c["finish_reason"], "logprobs": _logprobs(c) if body.get("logprobs") else None}
               for i, c in enumerate(reply["choices"])]
    return {**_head(body), "object": "chat.completion", "choices": choices, "usage": stream.usage(reply),
            "system_fingerprint": None}


async def _stream(service, owner: str, body: dict, include_usage: bool) -> StreamingResponse:
    """Errors up to the first token answer as JSON; then the events follow as tokens come."""
    request = await run_in_threadpool(_worker_request, service, owner, body, True)
    messages = stream.start(service.serving.stream(request))
    first = await stream.next_message(messages)
    return StreamingResponse(stream.chat_events(_head(body), first, messages, include_usage),
                             media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _stream_options(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage) from the body, checked."""
    stream, options = body.get("stream") or False, body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise RftkitError("stream must be true or false, and stream_options an object")
    if options and not stream:
        raise RftkitError("stream_options: only with stream: true")
    return stream, bool(options.get("include_usage"))


@router.post("/chat/completions")
async def chat_completions(request: Request, body: dict = Body(...), owner: str = Depends(project)):
    streaming, include_usage = _stream_options(body)
    service = request.app.state.service
    try:
        if streaming:
            return await _stream(service, owner, body, include_usage)
        return await run_in_threadpool(_complete, service, owner, body)
    except WorkerFailed as err:
        return error_response(500, str(err), "server_error")
