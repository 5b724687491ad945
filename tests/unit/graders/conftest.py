"""Fixtures for grader tests: real local HTTP servers (an OpenAI-compatible chat endpoint and a
Bedrock-reward-Lambda-shaped one) and the sandbox, skipped with its reason where it cannot run."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest

from rftkit.graders import GraderContext
from rftkit.graders.sandbox import SandboxLimits, SandboxPool, SandboxUnavailable


class ScriptedServer:
    """A real HTTP server on 127.0.0.1. `reply(path, body) -> (status, json_body)` decides each
    answer (bytes are sent as they are; a third item adds headers); every request body is kept
    in `requests`, in arrival order."""

    def __init__(self, reply: Callable[[str, object], tuple[int, object]]):
        self.reply, self.requests, self.lock = reply, [], threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                status, answer, *headers = server.reply(self.path, body)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers[0] if headers else {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    """serve(reply) starts a ScriptedServer; all are stopped after the test."""
    servers = []

    def start(reply):
        servers.append(ScriptedServer(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _chat_reply(content: str, usage: dict | None = None, model: str = "judge-1") -> dict:
    return {"id": "c1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


def _judge_context(url: str, **overrides) -> GraderContext:
    settings = {"judge_base_url": url + "/v1", "judge_api_key": "sk-test", "judge_backoff_seconds": 0.01,
                "judge_max_retries": 2, "judge_timeout_seconds": 5.0}
    return GraderContext(**{**settings, **overrides})


@pytest.fixture
def chat_reply():
    """chat_reply(content, usage=None, model=...) -> an OpenAI chat.completion body."""
    return _chat_reply


@pytest.fixture
def judge_context():
    """judge_context(server_url, **overrides) -> a GraderContext pointing at that server, fast retries."""
    return _judge_context


# Short limits keep the runaway-code tests quick; the defaults are covered by the docs.
TEST_LIMITS = SandboxLimits(wall_seconds=2.0, cpu_seconds=1.0, workers=2)


@pytest.fixture(scope="session")
def sandbox_ready() -> None:
    """Skip (with the reason) where the sandbox cannot start: not root, no namespaces, no cgroups."""
    try:
        with SandboxPool(TEST_LIMITS, workers=1) as pool:
            pool.run([{"op": "ping"}])
    except SandboxUnavailable as err:
        pytest.skip(f"sandbox unavailable here: {err}")


@pytest.fixture(scope="session")
def sandbox_limits(sandbox_ready) -> SandboxLimits:
    return TEST_LIMITS


@pytest.fixture
def sandbox_context(sandbox_ready) -> GraderContext:
    return GraderContext(sandbox=TEST_LIMITS)
