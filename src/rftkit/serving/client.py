"""The server's side of inference: one worker process, requests one at a time, no torch here."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterator

from rftkit.errors import RftkitError

REQUEST_TIMEOUT_S = 600.0


class WorkerFailed(RuntimeError):
    """The inference worker died or broke the protocol (HTTP 500: a bug or the machine, not the request)."""


def _reply(message: dict) -> dict:
    if "error" in message:
        if message.get("user_error"):
            raise RftkitError(message["error"])
        raise WorkerFailed(message["error"])
    return message


class LineReader:
    """Lines from a pipe, with a timeout on each wait. It reads the file descriptor itself:
    `select` cannot see lines already pulled into a buffered file object's buffer, so a
    reply followed at once by the next would otherwise wait for a timeout."""

    def __init__(self):
        self.pending = b""

    def read(self, fd: int, timeout: float) -> str | None:
        """The next line, or None when the pipe closed or nothing came within `timeout`."""
        while b"\n" not in self.pending:
            try:
                ready, _, _ = select.select([fd], [], [], timeout)
                chunk = os.read(fd, 1 << 16) if ready else b""
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                self.pending = b""
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode("utf-8")


class ServingClient:
    def __init__(self, python: str = sys.executable, timeout: float = REQUEST_TIMEOUT_S):
        self.python, self.timeout = python, timeout
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._lines = LineReader()

    def _ensure(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._lines = LineReader()
            self._process = subprocess.Popen(
                [self.python, "-m", "rftkit.serving.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=None, text=True, bufsize=1, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        return self._process

    def complete(self, request: dict) -> dict:
        """Send one request ({model_path, messages, max_tokens, temperature, top_p, n, seed}),
        return {choices: [{text, finish_reason}], prompt_tokens, completion_tokens}."""
        *_, reply = self.stream({**request, "stream": False})
        return reply

    def stream(self, request: dict) -> Iterator[dict]:
        """Send one request; yield its {"delta": {index, content}} messages as the worker sends
        them (with `"stream": true`), then the final reply. The worker is held meanwhile; a
        stream abandoned before its end stops the worker (the next request starts another)."""
        with self._lock:
            process, finished = self._ensure(), False
            try:
                self._send(process, request)
                while True:
                    message = self._receive(process)
                    if "delta" not in message:
                        finished = True
                        yield _reply(message)
                        return
                    yield message
            finally:
                if not finished:
                    self._kill()

    def _send(self, process: subprocess.Popen, request: dict) -> None:
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the read below finds the worker gone

    def _receive(self, process: subprocess.Popen) -> dict:
        line = self._lines.read(process.stdout.fileno(), self.timeout)
        if line is None:
            raise WorkerFailed("the inference worker stopped without answering; see the server's log")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise WorkerFailed(f"the inference worker broke the protocol: {line[:200]!r}") from None

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def close(self) -> None:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.stdin.close()
                try:
                    self._process.wait(10)
                except subprocess.TimeoutExpired:
                    self._kill()
            self._process = None
