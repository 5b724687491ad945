"""The limits every sandboxed grade runs under (python graders, code_tests)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SandboxLimits:
    """Per-grade and per-worker limits. Defaults suit graders that take milliseconds.

    `wall_seconds` and `cpu_seconds` bound one grade (code_tests: one test case takes its
    spec's `time_limit_seconds` instead); `memory_mb` is the address space of each process;
    `max_processes` counts the processes and threads of one worker together.
    """

    memory_mb: int = 2048
    wall_seconds: float = 10.0
    cpu_seconds: float = 10.0
    file_size_mb: int = 16
    tmpfs_mb: int = 64
    max_processes: int = 64
    max_open_files: int = 256
    worker_cpu_seconds: int = 3600  # the serving process's own lifetime CPU budget
    workers: int = 0  # processes in the warm pool; 0: one per available core
    start_seconds: float = 30.0  # how long a new worker may take to be ready

    def for_worker(self) -> dict:
        return asdict(self)
