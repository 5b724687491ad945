"""POST with retries: what rftkit's HTTP callers share (graders' judges and endpoints, the openai engine).

Retried: connection errors, timeouts and the statuses in `RETRY_STATUS`, after a pause that
doubles from `backoff_s` with +-25 % jitter (a `Retry-After` in seconds is honoured, up to 30 s).
Any other answer, 4xx included, is returned for the caller to judge: a retry cannot fix a bad
key or a bad model name.
"""

from __future__ import annotations

import random
import time
from typing import Any

import httpx

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class RetriesExhausted(Exception):
    """Every try failed; `str()` says how the last one did, `tries` how many there were."""

    def __init__(self, last: str, tries: int):
        super().__init__(last)
        self.last, self.tries = last, tries


def post_retrying(client: httpx.Client, url: str, body: Any, *, retries: int, backoff_s: float,
                  retry_status=RETRY_STATUS, quote_body: bool = True) -> httpx.Response:
    """The first answer whose status is not retried; RetriesExhausted after `retries` + 1 tries.
    `quote_body=False` keeps the server's body out of the message (graders: the caller may be
    another project than the server's owner)."""
    last, hint = "", None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(_pause(backoff_s, attempt, hint))
            hint = None
        try:
            response = client.post(url, json=body)
        except httpx.TimeoutException:
            timeout = client.timeout.read
            last = f"no answer from {url}" + (f" within {timeout:g} s" if timeout is not None else "")
            continue
        except httpx.HTTPError as err:
            last = f"{url}: {type(err).__name__}: {err}"
            continue
        if response.status_code in retry_status:
            last = f"{url} answered HTTP {response.status_code}" + (f": {response.text[:200]}" if quote_body else "")
            hint = response.headers.get("retry-after")
            continue
        return response
    raise RetriesExhausted(last, retries + 1)


def _pause(backoff_s: float, attempt: int, hint: str | None) -> float:
    if hint and hint.strip().isdigit():
        return min(30.0, float(hint))
    return backoff_s * 2 ** (attempt - 1) * random.uniform(0.75, 1.25)
