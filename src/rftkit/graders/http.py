"""HTTP for graders that call out (LLM judges, reward endpoints): retries with backoff
(`rftkit.retry`: connection errors, timeouts, 408, 409, 429 and 5xx), and failures as
GraderFailure, so that a flaky server costs samples, never the run.

Errors say what was expected and how the server answered (its status, the kind of reply),
never the body: over the API a grader's error goes back to the project that posted it, and
the body of whatever server it pointed at must not. Redirects are not followed (a grader
names its final URL), and over the API every connection obeys the operator's network rule
(network.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from rftkit.graders.base import GraderFailure
from rftkit.graders.network import HostRefused, NetworkPolicy, guarded_transport
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
                 server_error_kind: str = "model_grader_server_error", network: NetworkPolicy | None = None):
        self.settings, self.kind = settings, server_error_kind
        limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency)
        transport = guarded_transport(network, limits) if network is not None else None
        self.client = httpx.Client(timeout=settings.timeout_seconds, headers=headers or {}, limits=limits,
                                   transport=transport, follow_redirects=False)

    def post_json(self, url: str, body: Any) -> Any:
        try:
            response = post_retrying(self.client, url, body, retries=self.settings.max_retries,
                                     backoff_s=self.settings.backoff_seconds, quote_body=False)
        except RetriesExhausted as err:
            raise GraderFailure(self.kind, f"{err.last} (gave up after {err.tries} "
                                           f"{'try' if err.tries == 1 else 'tries'})") from None
        except HostRefused as err:
            raise GraderFailure(self.kind, str(err)) from None
        except (httpx.InvalidURL, UnicodeError) as err:  # e.g. a host label IDNA cannot encode
            raise GraderFailure(self.kind, f"{url} cannot be requested: {err}") from None
        return self.decoded(url, response)

    def decoded(self, url: str, response: httpx.Response) -> Any:
        """The reply's JSON, or GraderFailure saying how the answer differed from one (no body)."""
        status = response.status_code
        if 300 <= status < 400:
            raise GraderFailure(self.kind, f"{url} answered a redirect (HTTP {status}); graders do not follow "
                                           f"redirects: name the final URL")
        if status >= 400 or status < 200:
            raise GraderFailure(self.kind, f"{url} answered HTTP {status}; expected 200 with a JSON body")
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise GraderFailure(self.kind, f"{url} answered HTTP {status} with a body that is not JSON "
                                           f"({kind}, {len(response.content)} bytes); expected JSON") from None

    def close(self) -> None:
        self.client.close()
