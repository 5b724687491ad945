"""The `openai` engine: sampling from any OpenAI-compatible server, token ids in and out.

It posts token-id prompts to the server's `/completions` route (`vllm serve`, SGLang,
`rftkit serve`) and asks for the sampled token ids and their log-probs: vLLM's
`return_token_ids` (and `return_tokens_as_token_ids`, whose `token_id:N` strings it also
reads), `logprobs: 0`. So the trainer learns from exactly the ids the server sampled: nothing
is re-encoded from text. A reply without token ids or log-probs is an error, not a guess.

Before sampling, `update_weights` gives the server the trainer's weights
(`rftkit.engine_options.weight_sync`):

- `load_lora_adapter` (vLLM's runtime LoRA route, which `rftkit serve` also has): the policy is
  saved to `weights_dir/v<version>` (a PEFT adapter under LoRA, otherwise a whole model, which
  `rftkit serve` accepts and vLLM does not) and loaded under the name `<model>@v<version>`;
  requests name it, and the previous version is unloaded and its folder removed;
- `update_weights_from_disk` (SGLang's route): whole weights (LoRA merged) saved and loaded in place;
- `none`: the served weights stay as they are (evaluating a served model).

The server must read `weights_dir` at the same path (one machine, or a shared file system).
Every request has a timeout; a connection error, a timeout, 429 or a 5xx is retried with
exponential backoff, and when retries run out `EngineUnavailable` stops the job with a
checkpoint it can resume from. Other answers (4xx) are errors at once.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import torch

from rftkit.config import EngineOptions
from rftkit.errors import RftkitError
from rftkit.retry import RetriesExhausted, post_retrying
from rftkit.rollout.engine import Completion, Engine, EngineContext, EngineUnavailable, TokenCallback, register_engine
from rftkit.types import SamplingParams, Shard

RETRIED = frozenset({408, 425, 429, 500, 502, 503, 504})  # not 409: rftkit serve's "not in that state"


@register_engine("openai")
class OpenAIEngine(Engine):
    exact_logprobs = False
    holds_own_weights = True

    def __init__(self, context: EngineContext):
        super().__init__()
        options = context.options or EngineOptions()
        if not options.base_url:
            raise RftkitError("rftkit.engine_options.base_url: engine openai needs the server's base URL",
                              fix="e.g. base_url: http://127.0.0.1:8000/v1 (vllm serve, SGLang, rftkit serve)")
        self.options, self.tokenizer = options, context.tokenizer
        self.base_url = options.base_url.rstrip("/")
        self.served = options.model or context.model_path
        if not self.served:
            raise RftkitError("rftkit.engine_options.model: the served model's name is needed",
                              fix="set it to the name the server knows the base model by")
        self.model_name = self.served  # what requests name: the base, or the last weights loaded
        self.weights_dir = Path(options.weights_dir or Path(context.work_dir or ".") / "engine-weights").resolve()
        self.client = httpx.Client(timeout=options.timeout_s, headers=_headers(options))

    # ------------------------------------------------------------------ sampling

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams, *, n: int = 1,
                 generator: torch.Generator | None = None,
                 on_tokens: TokenCallback | None = None, shard: Shard | None = None) -> list[list[Completion]]:
        """`on_tokens` is not called: replies come whole. `shard` is not used: the server's
        numerics are its own, and its seeds are per request."""
        out: list[list[Completion]] = []
        step = self.options.prompts_per_request
        for start in range(0, len(prompts), step):
            chunk = [list(p) for p in prompts[start:start + step]]
            body = self._body(chunk, params, n, generator)
            reply = self._post("/completions", body)
            try:
                answer = reply.json()
            except ValueError:
                raise RftkitError(f"{reply.url}: the answer is not JSON") from None
            out.extend(self._completions(answer, len(chunk), n))
        return out

    def _body(self, prompts: list[list[int]], params: SamplingParams, n: int, generator) -> dict:
        body: dict[str, Any] = {
            "model": self.model_name, "prompt": prompts, "n": n, "max_tokens": params.max_new_tokens,
            "temperature": params.temperature, "top_p": params.top_p, "logprobs": 0,
            "return_token_ids": True, "return_tokens_as_token_ids": True, "skip_special_tokens": False,
        }
        if params.top_k:
            body["top_k"] = params.top_k
        if generator is not None:  # the request's seed comes from the job's sampling RNG: reproducible
            body["seed"] = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        return body

    def _completions(self, reply: dict, prompts: int, n: int) -> list[list[Completion]]:
        choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != prompts * n:
            raise RftkitError(f"{self.base_url}/completions answered {len(choices)} choices for {prompts} "
                              f"prompts x {n}", fix="check that the server supports a list of token-id prompts")
        parsed = [self._completion(choice) for choice in choices]
        return [parsed[i * n:(i + 1) * n] for i in range(prompts)]

    def _completion(self, choice: dict) -> Completion:
        logprobs = choice.get("logprobs") or {}
        ids = choice.get("token_ids")
        if ids is None and logprobs.get("tokens") is not None:
            ids = [_token_id(token) for token in logprobs["tokens"]]
        values = logprobs.get("token_logprobs")
        if ids is None or any(i is None for i in ids) or values is None or len(values) != len(ids):
            raise RftkitError(
                f"{self.base_url}/completions answered without the sampled token ids and their log-probs",
                fix="vLLM: any recent `vllm serve` (return_token_ids); SGLang: enable return of token ids; "
                    "rftkit serve: update rftkit")
        finish = "stop" if choice.get("finish_reason") == "stop" else "length"
        return Completion(list(ids), [float(v) for v in values], finish, self.version or 0)

    # ------------------------------------------------------------------ weights

    def update_weights(self, model: Any, version: int) -> None:
        if version == self.version:
            return
        mode = self.options.weight_sync
        if mode == "load_lora_adapter":
            self._load_adapter(model, version)
        elif mode == "update_weights_from_disk":
            folder = self._save(model, version, merged=True)
            self._post("/update_weights_from_disk", {"model_path": str(folder)}, root=True)
            self._forget_older(version)
        self.version = version

    def _load_adapter(self, model: Any, version: int) -> None:
        folder = self._save(model, version, merged=False)
        name = f"{self.served}@v{version}"
        self._post("/load_lora_adapter", {"lora_name": name, "lora_path": str(folder)})
        previous, self.model_name = self.model_name, name
        if previous != self.served:
            try:
                self._post("/unload_lora_adapter", {"lora_name": previous})
            except RftkitError:
                pass  # the server forgot it already (restarted): nothing to free
        self._forget_older(version)

    def _save(self, model: Any, version: int, *, merged: bool) -> Path:
        """The policy's weights in a fresh folder, written whole before the server is told."""
        folder = self.weights_dir / f"v{version}"
        partial = self.weights_dir / f".v{version}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        partial.mkdir(parents=True)
        source = model
        if merged and hasattr(model, "merge_and_unload"):
            source = copy.deepcopy(model).merge_and_unload()
        source.save_pretrained(partial)
        self.tokenizer.save_pretrained(partial)
        partial.rename(folder)
        return folder

    def _forget_older(self, version: int) -> None:
        for folder in self.weights_dir.glob("v*"):
            if folder.name[1:].isdigit() and int(folder.name[1:]) < version:
                shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------------------------ HTTP

    def _post(self, path: str, body: dict, *, root: bool = False) -> httpx.Response:
        """POST with retries; a successful reply. `root`: the route is at the server's root, not under /v1."""
        base = self.base_url.removesuffix("/v1") if root else self.base_url
        url = f"{base}{path}"
        try:
            reply = post_retrying(self.client, url, body, retries=self.options.max_retries,
                                  backoff_s=self.options.backoff_s, retry_status=RETRIED)
        except RetriesExhausted as err:
            raise EngineUnavailable(f"the rollout server {url} did not answer after {err.tries} tries ({err.last})",
                                    fix="start it, or correct rftkit.engine_options.base_url") from None
        if reply.status_code >= 400:
            raise RftkitError(f"{url}: HTTP {reply.status_code}: {_message(reply)}")
        return reply

    def close(self) -> None:
        self.client.close()


def _headers(options: EngineOptions) -> dict:
    if not options.api_key_env:
        return {}
    key = os.environ.get(options.api_key_env)
    if not key:
        raise RftkitError(f"rftkit.engine_options.api_key_env: ${options.api_key_env} is not set",
                          fix=f"export {options.api_key_env}=<the server's API key>")
    return {"Authorization": f"Bearer {key}"}


def _token_id(token: Any) -> int | None:
    """vLLM's `token_id:123` (return_tokens_as_token_ids), or None for a plain token string."""
    if isinstance(token, str) and token.startswith("token_id:") and token[9:].isdigit():
        return int(token[9:])
    return None


def _message(reply: httpx.Response) -> str:
    """The server's own error message, short."""
    try:
        error = reply.json().get("error")
        text = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        text = None
    return str(text or reply.text or reply.reason_phrase)[:300]
