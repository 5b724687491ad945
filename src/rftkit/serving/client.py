"""The server's side of inference: one worker process, requests one at a time, no torch here."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading

from rftkit.errors import RftkitError

REQUEST_TIMEOUT_S = 600.0


class WorkerFailed(RuntimeError):
    """The inference worker died or broke the protocol (HTTP 500: a bug or the machine, not the request)."""


class ServingClient:
    def __init__(self, python: str = sys.executable, timeout: float = REQUEST_TIMEOUT_S):
        self.python, self.timeout = python, timeout
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [self.python, "-m", "rftkit.serving.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=None, text=True, bufsize=1, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        return self._process

    def complete(self, request: dict) -> dict:
        """Send one request ({model_path, messages, max_tokens, temperature, top_p, n, seed}),
        return {choices: [{text, finish_reason}], prompt_tokens, completion_tokens}."""
        with self._lock:
            process = self._ensure()
            try:
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
                ready, _, _ = select.select([process.stdout], [], [], self.timeout)
                line = process.stdout.readline() if ready else ""
            except (BrokenPipeError, OSError):
                line = ""
            if not line:
                self._kill()
                raise WorkerFailed("the inference worker stopped without answering; see the server's log")
        reply = json.loads(line)
        if "error" in reply:
            if reply.get("user_error"):
                raise RftkitError(reply["error"])
            raise WorkerFailed(reply["error"])
        return reply

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
