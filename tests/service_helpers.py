"""Helpers for tests of `rftkit serve`: a real server on a free port, tiny RL data and jobs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from helpers import write_jsonl


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`rftkit serve` in a child process of its own (a process group, so a test can SIGKILL it)."""

    def __init__(self, data_dir: Path, *, workers: int = 1, env: dict | None = None, db: str | None = None,
                 args: tuple[str, ...] = ()):
        self.data_dir, self.workers, self.db, self.args = data_dir, workers, db, args
        # one thread per trainer: on a shared 2-core machine, OpenMP threads that spin on a busy core
        # slow a tiny model down many times over
        self.env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **(env or {})}
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "Server":
        command = [sys.executable, "-m", "rftkit.cli", "serve", "--port", str(self.port),
                   "--data-dir", str(self.data_dir), "--workers", str(self.workers)]
        if self.db:
            command += ["--db", self.db]
        command += list(self.args)
        handle = self.log.open("a")
        self.process = subprocess.Popen(command, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/v1/models", timeout=1).status_code == 401:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean-up runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.kill()


def create_key(data_dir: Path, project: str = "default") -> str:
    result = subprocess.run([sys.executable, "-m", "rftkit.cli", "keys", "create", "--project", project,
                             "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def serve_tiny(data_dir: Path, tiny_dir: Path, **server) -> tuple[Server, str]:
    """A started `rftkit serve` over `data_dir`, with the tiny model as `tiny` and a key of project
    'default'; `server` goes to `Server` (workers, env, args)."""
    shutil.copytree(tiny_dir, data_dir / "models" / "tiny")
    key = create_key(data_dir)
    return Server(data_dir, **server).start(), key


def openai_client(server: Server, key: str):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def write_rl_files(folder: Path) -> tuple[Path, Path]:
    """Eight training and four validation prompts; the grader rewards an 'a' in the answer."""
    folder.mkdir(parents=True, exist_ok=True)
    prompts = [{"messages": [{"role": "user", "content": f"say something with an a, take {i}"}]} for i in range(12)]
    return write_jsonl(folder / "train.jsonl", prompts[:8]), write_jsonl(folder / "valid.jsonl", prompts[8:])


GRADER = {"type": "string_check", "name": "has a", "input": "{{ sample.output_text }}", "reference": "a",
          "operation": "like"}


def rftkit_block(steps: int, **extra) -> dict:
    """A tiny, fast reinforcement run: checkpoint every step, short completions. The baseline
    draws 16 samples of 16 bytes per prompt: the untrained model's random bytes then hold an 'a'
    somewhere (which the baseline check needs) whatever the sampling stream, not by one seed's luck."""
    return {"group_size": 4, "learning_rate": 1e-3, "max_steps": steps, "lengths": {"max_completion_tokens": 16},
            "eval": {"k": 16}, "checkpoints": {"interval": 1, "keep_last": 2}, "device": "cpu", **extra}


def reinforcement_method(eval_interval: int = 5) -> dict:
    return {"type": "reinforcement", "reinforcement": {
        "grader": GRADER, "hyperparameters": {"batch_size": 4, "eval_interval": eval_interval}}}


def wait_for(predicate, timeout: float = 180, every: float = 0.2, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def metrics_steps(events: list) -> list[int]:
    return sorted(e["data"]["step"] if isinstance(e, dict) else e.data["step"] for e in events
                  if (e["type"] if isinstance(e, dict) else e.type) == "metrics")


def trainers_of(job_id: str) -> list[int]:
    """Pids of live processes whose command line names the job (its trainer)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and job_id.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


CHROMIUM = Path("/usr/bin/chromium")  # Debian's; the dashboard tests skip without it


@contextmanager
def dashboard_page(url: str, key: str, timeout_ms: int = 90_000):
    """A Chromium page (driven by Playwright) on the dashboard at `url`, signed in with `key`;
    at the end, fails unless the page loaded nothing from outside the server."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(timeout_ms)
        foreign = []
        page.on("request", lambda request: foreign.append(request.url)
                if urlparse(request.url).netloc != urlparse(url).netloc else None)
        page.goto(f"{url}/#key={key}")
        yield page
        browser.close()
        assert foreign == [], "the dashboard must load nothing from outside the server"


def call_api(url: str, key: str, method: str, path: str, **kwargs):
    """One request with the key; asserts it succeeded and returns its JSON."""
    reply = httpx.request(method, url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kwargs)
    assert reply.status_code == 200, reply.text
    return reply.json()
