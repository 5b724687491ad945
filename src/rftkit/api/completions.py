"""/v1/completions (token ids in, token ids and log-probs out) and vLLM's runtime adapter routes.

`POST /v1/completions` is OpenAI's legacy completions route with the vLLM extensions that RL
trainers rely on, so that `rftkit serve` can be the rollout server of a job (engine `openai`):

- `prompt` may be a string, a list of strings, a list of token ids or a list of such lists;
- `logprobs: 0` returns each sampled token's log-probability (under the temperature-scaled
  distribution, as rftkit trains on it); alternatives (`logprobs` > 0) are not computed;
- `return_token_ids: true` adds each choice's sampled `token_ids` (and `prompt_token_ids`);
  `return_tokens_as_token_ids: true` writes tokens as `token_id:N`.

Choices come prompt-major: prompt i's sample j has index i * n + j.

`POST /v1/load_lora_adapter` {lora_name, lora_path} serves a model directory under a name for
the caller's project: a PEFT adapter, as in vLLM, or (rftkit's addition) a whole model, so that
a full fine-tune's weights reach the server each step. The folder must be one the project may
load by path (`jobs.models.readable_by`: DATA_DIR/models, its own jobs, or `--model-dir`). `POST /v1/unload_lora_adapter`
{lora_name} forgets it. Names live in the server's memory, as in vLLM.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from rftkit.api.auth import project
from rftkit.api.errors import error_response
from rftkit.errors import RftkitError
from rftkit.jobs.models import check_model_name, readable_by, resolve_model
from rftkit.jobs.store import NotFound
from rftkit.serving.client import WorkerFailed

router = APIRouter(prefix="/v1")

MAX_PROMPTS = 256


class Adapters:
    """Model directories loaded at run time, by (project, name)."""

    def __init__(self):
        self._paths: dict[tuple[str, str], Path] = {}
        self._lock = threading.Lock()

    def load(self, owner: str, name: str, path: Path) -> None:
        with self._lock:
            self._paths[(owner, name)] = path

    def unload(self, owner: str, name: str) -> bool:
        with self._lock:
            return self._paths.pop((owner, name), None) is not None

    def get(self, owner: str, name: str) -> Path | None:
        with self._lock:
            return self._paths.get((owner, name))


def served_model(service, owner: str, name: str) -> str:
    """The directory (or hub name) behind a model name: a loaded adapter first, then the models
    the service knows (`jobs.models.resolve_model`)."""
    loaded = service.adapters.get(owner, name)
    if loaded is not None:
        if not loaded.is_dir():
            raise NotFound(f"model {name!r}: its folder is gone", fix="load it again with /v1/load_lora_adapter")
        return str(loaded)
    return str(resolve_model(service.store, owner, name, service.data_dir, service.settings.model_dirs))


def _number(body: dict, key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RftkitError(f"{key}: a number from {low:g} to {high:g}")
    return float(value)


def sampling(body: dict, default_max_tokens: int = 64) -> dict:
    """The sampling settings of a chat or completions body, checked."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    n = body.get("n") or 1
    if not isinstance(limit, int) or not 1 <= limit <= 4096 or not isinstance(n, int) or not 1 <= n <= 64:
        raise RftkitError("max_tokens must be 1..4096 and n 1..64")
    top_k = body.get("top_k") or 0
    if not isinstance(top_k, int) or top_k < -1:
        raise RftkitError("top_k: a whole number, 0 or -1 for every token")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RftkitError("seed: an integer")
    return {"max_tokens": limit, "n": n, "temperature": _number(body, "temperature", 1.0, 0.0, 2.0),
            "top_p": _number(body, "top_p", 1.0, 1e-9, 1.0) if body.get("top_p") else 1.0,
            "top_k": max(top_k, 0), "seed": seed}


def refuse_response_format(body: dict) -> None:
    """`response_format` other than {"type": "text"} is refused, not ignored: sampling is not
    constrained, so a JSON answer cannot be promised (OpenAI's 400 shape, naming the field)."""
    value = body.get("response_format")
    if value is None:
        return
    kind = value.get("type") if isinstance(value, dict) else None
    if kind != "text":
        raise RftkitError(f"response_format: type {kind!r} is not supported; rftkit serves unconstrained text",
                          fix='leave response_format out (or {"type": "text"}), ask for JSON in the prompt and '
                              "check the answer yourself")


def _name(body: dict) -> str:
    name = body.get("lora_name")
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise RftkitError("lora_name: a non-empty name (at most 256 characters)")
    return name


@router.post("/load_lora_adapter", response_class=PlainTextResponse)
def load_lora_adapter(request: Request, body: dict = Body(...), owner: str = Depends(project)) -> str:
    name, path = _name(body), body.get("lora_path")
    if not isinstance(path, str) or not Path(path).is_absolute() or ".." in Path(path).parts:
        raise RftkitError("lora_path: an absolute path on the server, without '..'")
    check_model_name(path, "lora_path")
    folder, service = Path(path), request.app.state.service
    if not readable_by(service.store, owner, folder, service.data_dir, service.settings.model_dirs):
        raise RftkitError("lora_path: not a folder this project may load",
                          fix="write the weights under one of its jobs, or a folder the operator shares with "
                              "`rftkit serve --model-dir`")
    if not ((folder / "adapter_config.json").is_file() or (folder / "config.json").is_file()):
        raise RftkitError(f"lora_path: {path} holds no adapter_config.json or config.json",
                          fix="save the adapter or model there with save_pretrained first")
    service.adapters.load(owner, name, folder.resolve())
    return f"Success: LoRA adapter '{name}' added successfully."


@router.post("/unload_lora_adapter", response_class=PlainTextResponse)
def unload_lora_adapter(request: Request, body: dict = Body(...), owner: str = Depends(project)) -> str:
    name = _name(body)
    if not request.app.state.service.adapters.unload(owner, name):
        raise NotFound(f"no adapter {name!r} is loaded")
    return f"Success: LoRA adapter '{name}' removed successfully."


def _prompts(prompt: Any) -> dict:
    """{"prompts": [[ids]]} or {"texts": [str]} from the body's `prompt`."""
    if isinstance(prompt, str):
        return {"texts": [prompt]}
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return {"texts": prompt}
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return {"prompts": [prompt]}
    if (isinstance(prompt, list) and prompt and all(isinstance(p, list) and p for p in prompt)
            and all(isinstance(t, int) and not isinstance(t, bool) for p in prompt for t in p)):
        return {"prompts": prompt}
    raise RftkitError("prompt: a string, a list of strings, a list of token ids, or a list of token-id lists")


def _request(service, owner: str, body: dict) -> dict:
    refuse_response_format(body)
    prompts = _prompts(body.get("prompt"))
    if len(prompts.get("prompts") or prompts.get("texts")) > MAX_PROMPTS:
        raise RftkitError(f"prompt: at most {MAX_PROMPTS} prompts per request")
    logprobs = body.get("logprobs")
    if logprobs is not None and (not isinstance(logprobs, int) or logprobs != 0):
        raise RftkitError("logprobs: only 0 (the sampled token's log-prob) is supported; alternatives are not computed")
    if body.get("echo") or body.get("suffix") or body.get("stop") or (body.get("best_of") or 1) != 1:
        raise RftkitError("echo, suffix, stop and best_of are not supported")
    return {"model_path": served_model(service, owner, str(body.get("model") or "")), **prompts,
            **sampling(body, default_max_tokens=16)}


def _choice(index: int, choice: dict, body: dict) -> dict:
    out: dict[str, Any] = {"index": index, "text": choice["text"], "finish_reason": choice["finish_reason"],
                           "logprobs": None}
    if body.get("logprobs") is not None:
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        tokens = [f"token_id:{t}" for t in choice["token_ids"]] if as_ids else choice["tokens"]
        offsets, at = [], 0
        for token in choice["tokens"]:
            offsets.append(at)
            at += len(token)
        out["logprobs"] = {"tokens": tokens, "token_logprobs": choice["logprobs"],
                           "top_logprobs": [{} for _ in tokens], "text_offset": offsets}
    if body.get("return_token_ids"):
        out["token_ids"] = choice["token_ids"]
    return out


def _complete(service, owner: str, body: dict) -> dict:
    request = _request(service, owner, body)
    reply = service.serving.complete(request)
    choices = [_choice(i, c, body) for i, c in enumerate(reply["choices"])]
    if body.get("return_token_ids") and reply.get("prompt_ids"):
        n = request["n"]
        for i, choice in enumerate(choices):
            choice["prompt_token_ids"] = reply["prompt_ids"][i // n]
    usage = {"prompt_tokens": reply["prompt_tokens"], "completion_tokens": reply["completion_tokens"],
             "total_tokens": reply["prompt_tokens"] + reply["completion_tokens"]}
    return {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time()),
            "model": str(body.get("model")), "choices": choices, "usage": usage, "system_fingerprint": None}


@router.post("/completions")
async def completions(request: Request, body: dict = Body(...), owner: str = Depends(project)):
    if body.get("stream"):
        raise RftkitError("stream: /v1/completions answers whole; use /v1/chat/completions to stream")
    try:
        return await run_in_threadpool(_complete, request.app.state.service, owner, body)
    except WorkerFailed as err:
        return error_response(500, str(err), "server_error")
