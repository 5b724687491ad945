"""The warm pool: jailed worker processes that each serve many grades.

Starting a sandboxed Python process costs tens of milliseconds; a worker that stays up and
forks a child per grade costs well under one. `SandboxPool.run(tasks)` cuts the tasks into
chunks, hands them to the workers from one thread per worker, and puts each reply at its
task's index. A worker that dies or stops answering is killed (with every process in its
namespace), its in-flight task is answered with an error, the rest of its chunk goes back on
the queue, and a fresh worker takes its place on the next chunk.

If no worker can be started (no root, no namespaces) the pool raises `SandboxUnavailable`:
untrusted code is never run any other way.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from random import SystemRandom

from rftkit.errors import RftkitError
from rftkit.graders.sandbox.cgroups import CgroupError, WorkerCgroups
from rftkit.graders.sandbox.limits import SandboxLimits

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
GRACE_SECONDS = 5.0  # past a task's own limit, before the pool declares the worker stuck
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
PROCESS_SLACK = 4  # the keeper, PID 1 and a little room above RLIMIT_NPROC in the pids cgroup
NEEDS_ROOT = ("run rftkit as root on Linux (a container run as root with --privileged is enough): the sandbox "
              "needs namespaces, mounts, cgroups and an unprivileged uid, and untrusted code is never run without it")
_live_workers: set["Worker"] = set()


class SandboxUnavailable(RftkitError):
    """The sandbox cannot be set up here; graders that need it refuse to run."""


def filesystem_view() -> tuple[list[str], dict[str, str]]:
    """What the jail binds read-only (system dirs, the interpreter, the venv) and the top-level
    symlinks it recreates (/bin -> usr/bin on merged-/usr systems)."""
    binds: list[str] = []
    links: dict[str, str] = {}
    for name in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            links[name] = os.readlink(name)
        elif os.path.isdir(name):
            binds.append(name)
    wanted = {sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable)), *site.getsitepackages()}
    for path in sorted({os.path.realpath(p) for p in wanted if os.path.isdir(p)}, key=len):
        if not any(path == b or path.startswith(b.rstrip("/") + "/") for b in binds):
            binds.append(path)
    binds += [f for f in ETC_FILES if os.path.exists(f)]
    return binds, links


def owner_prefix(pid: int) -> str:
    """What the cgroups and the temporary folder of every worker that process `pid` starts are
    named with: enough to find them once that process is gone (`remove_leftovers`)."""
    return f"rftkit-sandbox-{pid}-"


def remove_leftovers(owner_pid: int) -> list[str]:
    """Kill every sandbox process that process `owner_pid` started and remove their cgroups and
    temporary folders; the paths removed. For a process that cannot clean up after itself: a
    cancelled job's trainer is SIGKILLed, and its workers, in sessions of their own, outlive it."""
    prefix = owner_prefix(owner_pid)
    cgroups = WorkerCgroups.left_by(prefix)
    removed = [str(d) for d in cgroups.dirs]
    cgroups.remove()  # SIGKILL to every keeper, PID 1 and grade in them, then rmdir
    for root in Path(tempfile.gettempdir()).glob(prefix + "*"):
        try:  # an empty mount point on the host (the mounts lived in the worker's namespace): rmdir, never rmtree
            root.rmdir()
            removed.append(str(root))
        except OSError:
            pass
    return removed


class Worker:
    """One jailed worker process, seen from the pool."""

    def __init__(self, limits: SandboxLimits, programs: dict[str, str]):
        self.limits = limits
        self.uid = SystemRandom().randrange(1 << 28, 1 << 30)  # unique: RLIMIT_NPROC is per uid
        self.cgroups = _make_cgroups(limits, f"{owner_prefix(os.getpid())}{self.uid}")
        self.root = tempfile.mkdtemp(prefix=owner_prefix(os.getpid()))  # the jail's mount point
        binds, links = filesystem_view()
        config = {"root": self.root, "uid": self.uid, "binds": binds, "links": links,
                  "limits": limits.for_worker(), "cgroups": self.cgroups.procs_files}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", str(WORKER_SCRIPT), json.dumps(config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={}, cwd="/", close_fds=True, start_new_session=True,
            )
        except BaseException:
            self.cgroups.remove()
            os.rmdir(self.root)
            raise
        self.buffer = b""
        _live_workers.add(self)
        self._wait_ready()
        for key, source in programs.items():
            self.send([{"id": -1, "op": "load", "key": key, "source": source, "wall": limits.wall_seconds}])
            try:  # a load that fails is answered (each grade then reports it); one that hangs is not
                answered = self.read(time.monotonic() + limits.wall_seconds + GRACE_SECONDS) is not None
            except TimeoutError:
                answered = False
            if not answered:
                self.kill()
                raise RftkitError(f"the python grader's source did not load within {limits.wall_seconds:g} s "
                                  "in the sandbox (the worker hung or died)", fix="make its top-level code quick")

    def _wait_ready(self) -> None:
        try:
            message = self.read(time.monotonic() + self.limits.start_seconds)
        except TimeoutError:
            message = None
        if message is None or message.get("op") != "ready":
            self.kill()
            stderr = self.process.stderr.read().decode(errors="replace").strip() if self.process.stderr else ""
            reason = (message or {}).get("details") or stderr.splitlines()[-1:] or ["the worker exited"]
            reason = reason if isinstance(reason, str) else reason[0]
            raise SandboxUnavailable(f"the sandbox for untrusted grader code cannot start here: {reason}", fix=NEEDS_ROOT)

    def send(self, messages: list[dict]) -> None:
        data = "".join(json.dumps(m) + "\n" for m in messages).encode()
        fd = self.process.stdin.fileno()
        try:
            while data:
                data = data[os.write(fd, data):]
        except (BrokenPipeError, OSError):
            pass  # the worker is gone; read() will say so

    def read(self, deadline: float) -> dict | None:
        """The next message; None when the worker has exited; TimeoutError past the deadline."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        """Kill the keeper; the kernel then kills PID 1 of the jail and every process in it."""
        try:
            os.kill(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reap()

    def close(self) -> None:
        """Ask the worker to exit (EOF on its requests), kill it if it does not."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def _reap(self) -> None:
        self.process.wait()
        self.cgroups.remove()  # whatever outlived the keeper dies here, then the cgroups go
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                stream.close()
            except (OSError, AttributeError):
                pass
        try:  # the mounts lived in the worker's own mount namespace: on the host this is empty
            os.rmdir(self.root)
        except OSError:
            pass
        _live_workers.discard(self)


def _make_cgroups(limits: SandboxLimits, name: str) -> WorkerCgroups:
    if os.geteuid() != 0:
        raise SandboxUnavailable("the sandbox for untrusted grader code cannot start: rftkit is not running as root",
                                 fix=NEEDS_ROOT)
    try:
        return WorkerCgroups(name, limits.max_processes + PROCESS_SLACK, WorkerCgroups.memory_bytes(limits.memory_mb))
    except (CgroupError, OSError) as err:
        raise SandboxUnavailable(f"the sandbox for untrusted grader code cannot start: {err}", fix=NEEDS_ROOT) from None


@atexit.register
def _kill_leftover_workers() -> None:
    for worker in list(_live_workers):
        worker.kill()


def _failure(kind: str, details: str) -> dict:
    return {"ok": False, "kind": kind, "details": details}


class SandboxPool:
    """Warm, jailed workers that run `tasks` (worker.py's requests, without ids) in order."""

    def __init__(self, limits: SandboxLimits | None = None, programs: dict[str, str] | None = None,
                 workers: int | None = None):
        self.limits = limits or SandboxLimits()
        self.programs = dict(programs or {})
        count = workers or self.limits.workers or len(os.sched_getaffinity(0))
        self.workers: list[Worker | None] = [None] * count
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # one batch at a time: workers speak one protocol stream each

    def run(self, tasks: list[dict]) -> list[dict]:
        """Replies for `tasks`, in order: {"ok", "value" | "kind" + "details", "seconds"}."""
        if not tasks:
            return []
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(len(self.workers), thread_name_prefix="sandbox")
            replies: list[dict | None] = [None] * len(tasks)
            size = max(1, min(64, len(tasks) // (4 * len(self.workers))))
            queue = deque(list(range(i, min(i + size, len(tasks)))) for i in range(0, len(tasks), size))
            slots = range(min(len(self.workers), len(queue)))
            futures = [self._executor.submit(self._drain, slot, queue, tasks, replies) for slot in slots]
            for future in futures:
                future.result()  # re-raises SandboxUnavailable from a worker that cannot start
            return replies  # type: ignore[return-value]

    def _drain(self, slot: int, queue: deque, tasks: list[dict], replies: list) -> None:
        while True:
            try:
                chunk = queue.popleft()
            except IndexError:
                return
            if self.workers[slot] is not None and self.workers[slot].process.poll() is not None:
                self.workers[slot].kill()  # died between batches: replace it before it costs a task
                self.workers[slot] = None
            if self.workers[slot] is None:
                self.workers[slot] = Worker(self.limits, self.programs)
            leftover = self._run_chunk(self.workers[slot], chunk, tasks, replies)
            if leftover is not None:
                self.workers[slot].kill()
                self.workers[slot] = None
                if leftover:
                    queue.appendleft(leftover)

    def _run_chunk(self, worker: Worker, chunk: list[int], tasks: list[dict], replies: list) -> list[int] | None:
        """Run a chunk on a worker; on its death, return the indices it left unanswered."""
        worker.send([{**tasks[i], "id": i} for i in chunk])
        for position, index in enumerate(chunk):
            limit = tasks[index].get("deadline", self.limits.wall_seconds)
            try:
                reply = worker.read(time.monotonic() + limit + GRACE_SECONDS)
            except TimeoutError:
                replies[index] = _failure("unresponsive_reward_error", f"the sandbox worker did not answer within {limit + GRACE_SECONDS:g} s; it was replaced")
                return chunk[position + 1:]
            if reply is None:
                replies[index] = _failure("python_grader_server_error", "the sandbox worker died; it was replaced")
                return chunk[position + 1:]
            replies[index] = reply
        return None

    def close(self) -> None:
        """Stop every worker; their namespaces, processes and temporary files go with them."""
        with self._lock:
            for slot, worker in enumerate(self.workers):
                if worker is not None:
                    worker.close()
                    self.workers[slot] = None
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
