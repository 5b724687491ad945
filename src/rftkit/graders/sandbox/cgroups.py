"""One cgroup per sandbox worker: a hard cap on its processes and on its memory, together.

rlimits are per process (RLIMIT_AS) or per uid (RLIMIT_NPROC); a cgroup bounds the whole
worker at once — the keeper, PID 1 of its namespace and every process a grade forks — so a
fork bomb cannot exhaust the machine's PIDs and a swarm of processes each under the address-
space limit cannot exhaust its memory. The pool creates the cgroups, the worker moves itself
in before it forks anything (worker.py, first thing), and the pool kills whatever is left in
them and removes them when the worker goes.

Both layouts are handled: cgroup v1 (a `pids` and a `memory` hierarchy, as on this project's
machines) and the unified cgroup v2 tree with the pids and memory controllers available.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
MB = 1024 * 1024


class CgroupError(Exception):
    """The worker's cgroups cannot be made; the sandbox must not start without them."""


def _own_path(controller: str) -> str:
    """This process's cgroup in a v1 hierarchy ("/" when /proc/self/cgroup does not say)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "/"


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as err:
        raise CgroupError(f"cannot write {value!r} to {path}: {err.strerror}") from None


def _v2_ready() -> bool:
    controllers = ROOT / "cgroup.controllers"
    if not controllers.exists():
        return False
    available = controllers.read_text().split()
    if not {"pids", "memory"} <= set(available):
        return False
    subtree = ROOT / "cgroup.subtree_control"
    if not {"pids", "memory"} <= set(subtree.read_text().split()):
        _write(subtree, "+pids +memory")
    return True


class WorkerCgroups:
    """The cgroups of one worker: `procs_files` is what the worker writes its pid to."""

    def __init__(self, name: str, max_processes: int, memory_bytes: int):
        self.dirs: list[Path] = []
        try:
            if _v2_ready():
                self._make(ROOT / name, {"pids.max": max_processes, "memory.max": memory_bytes, "memory.swap.max": 0})
            elif (ROOT / "pids").is_dir() and (ROOT / "memory").is_dir():
                pids = ROOT / "pids" / _own_path("pids").lstrip("/") / name
                memory = ROOT / "memory" / _own_path("memory").lstrip("/") / name
                self._make(pids, {"pids.max": max_processes})
                self._make(memory, {"memory.limit_in_bytes": memory_bytes})
            else:
                raise CgroupError(f"no cgroup v2 tree with pids and memory, nor v1 pids and memory hierarchies, under {ROOT}")
        except BaseException:
            self.remove()
            raise

    @classmethod
    def left_by(cls, prefix: str) -> "WorkerCgroups":
        """The existing cgroups whose names start with `prefix` (a dead owner's workers'), to
        kill and remove with `remove()`; none where the hierarchies are missing."""
        found = cls.__new__(cls)
        if (ROOT / "cgroup.controllers").exists():
            parents = [ROOT]
        else:
            parents = [ROOT / c / _own_path(c).lstrip("/") for c in ("pids", "memory") if (ROOT / c).is_dir()]
        found.dirs = sorted(d for parent in parents if parent.is_dir() for d in parent.glob(prefix + "*"))
        return found

    def _make(self, path: Path, settings: dict[str, int]) -> None:
        try:
            path.mkdir()
        except OSError as err:
            raise CgroupError(f"cannot create the cgroup {path}: {err.strerror}") from None
        self.dirs.append(path)
        for key, value in settings.items():
            if (path / key).exists():
                _write(path / key, str(value))

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return found

    def kill_all(self, give_up_seconds: float = 10.0) -> bool:
        """SIGKILL every process in the cgroups until none is left; False if some survive."""
        deadline = time.monotonic() + give_up_seconds
        while (pids := self.pids()):
            if time.monotonic() > deadline:
                return False
            for pid in pids:  # pids.max bounds this set: a fork bomb cannot outrun the loop
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)
        return True

    def remove(self) -> None:
        """Kill what is left and remove the cgroups (a cgroup with processes cannot go)."""
        if not self.dirs:
            return
        self.kill_all()
        for d in reversed(self.dirs):
            for _ in range(200):  # the last exits are reaped asynchronously
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)
        self.dirs = [d for d in self.dirs if d.exists()]

    @staticmethod
    def memory_bytes(memory_mb: int, server_mb: int = 256) -> int:
        """The worker's total: one grade's address-space cap plus the serving process itself."""
        return (memory_mb + server_mb) * MB
