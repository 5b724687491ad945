"""HTTP for graders that call out (LLM judges, reward endpoints): retries with backoff
(`rftkit.retry`: connection errors, timeouts, 408, 409, 429 and 5xx), and failures as
GraderFailure, so that a flaky server costs samples, never the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from rftkit.graders.base import GraderFailure
from rftkit.retry import RetriesExhausted, post_retrying


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
        try:
            response = post_retrying(self.client, url, body, retries=self.settings.max_retries,
                                     backoff_s=self.settings.backoff_seconds)
        except RetriesExhausted as err:
            raise GraderFailure(self.kind, f"{err.last} (gave up after {err.tries} "
                                           f"{'try' if err.tries == 1 else 'tries'})") from None
        if response.status_code >= 400:
            raise GraderFailure(self.kind, f"{url} answered HTTP {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError:
            raise GraderFailure(self.kind, f"{url} answered with invalid JSON: {response.text[:200]!r}") from None

    def close(self) -> None:
        self.client.close()
