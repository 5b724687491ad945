"""HTTP for graders that call out (LLM judges, reward endpoints): retries with backoff, and
failures as GraderFailure, so that a flaky server costs samples, never the run.

Retried: connection errors, timeouts, 408, 409, 429 and 5xx, after a pause that doubles from
`backoff_seconds` with ±25 % jitter (a `Retry-After` in seconds is honoured, up to 30 s).
Not retried: other 4xx, which a retry cannot fix (bad key, bad model name).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from rftkit.graders.base import GraderFailure

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


@dataclass
class HttpSettings:
    timeout_seconds: float
    max_retries: int
    backoff_seconds: float
    concurrency: int


def settings_from(context) -> HttpSettings:
    return HttpSettings(context.judge_timeout_seconds, context.judge_max_retries,
                        context.judge_backoff_seconds, context.http_concurrency)


def judge_endpoint(context) -> tuple[str | None, str | None]:
    """Base URL and key of the judge: the context's, else the environment's."""
    base_url = context.judge_base_url or os.environ.get("RFTKIT_JUDGE_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
    api_key = context.judge_api_key or os.environ.get("RFTKIT_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
    return base_url, api_key


class HttpClient:
    """A pooled, thread-safe client that POSTs JSON and returns the decoded reply."""

    def __init__(self, settings: HttpSettings, headers: dict[str, str] | None = None,
                 server_error_kind: str = "model_grader_server_error"):
        self.settings, self.kind = settings, server_error_kind
        limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency)
        self.client = httpx.Client(timeout=settings.timeout_seconds, headers=headers or {}, limits=limits)

    def post_json(self, url: str, body: Any) -> Any:
        last, hint = "", None
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                time.sleep(self._pause(attempt, hint))
                hint = None
            try:
                response = self.client.post(url, json=body)
            except httpx.TimeoutException:
                last = f"no answer from {url} within {self.settings.timeout_seconds:g} s"
                continue
            except httpx.HTTPError as err:
                last = f"{url}: {type(err).__name__}: {err}"
                continue
            if response.status_code in RETRY_STATUS:
                last = f"{url} answered HTTP {response.status_code}: {response.text[:200]}"
                hint = response.headers.get("retry-after")
                continue
            if response.status_code >= 400:
                raise GraderFailure(self.kind, f"{url} answered HTTP {response.status_code}: {response.text[:300]}")
            try:
                return response.json()
            except ValueError:
                raise GraderFailure(self.kind, f"{url} answered with invalid JSON: {response.text[:200]!r}") from None
        tries = self.settings.max_retries + 1
        raise GraderFailure(self.kind, f"{last} (gave up after {tries} {'try' if tries == 1 else 'tries'})")

    def _pause(self, attempt: int, hint: str | None) -> float:
        if hint and hint.strip().isdigit():
            return min(30.0, float(hint))
        return self.settings.backoff_seconds * 2 ** (attempt - 1) * random.uniform(0.75, 1.25)

    def close(self) -> None:
        self.client.close()
