"""Python-grader throughput: the warm sandbox pool against a fresh process per grade.

    .venv/bin/python bench/graders.py [--grades 4000] [--fresh 40]

Both sides grade the same trivial grader (`return len(output) + bonus`) in the same run, under
the same sandbox (namespaces, cgroups, chroot, rlimits, unprivileged uid):
- pool: `grade_batch` on a python grader — warm workers, one fork per grade;
- fresh sandboxed process: a new sandbox worker started, used for one grade, and stopped —
  what serving each grade in its own new process costs with the same isolation;
- fresh plain process (for scale, no isolation at all): `python -c` per grade.
Prints grades/s for each and the pool's ratio to each fresh rate. Needs root (the sandbox).

Wall-clock rates depend on what else runs on the machine, so the pool's CPU time is measured
too (a cpuacct cgroup around this process and every worker: the scheduler's own count, not
sampled ticks), giving the rate its CPU cost allows on the machine's cores when they are idle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rftkit.graders import GraderContext, build_grader, grade_batch
from rftkit.graders.sandbox import SandboxLimits, SandboxPool
from rftkit.types import Sample

SOURCE = "def grade(sample, item):\n    return len(sample['output_text']) + item['bonus']\n"


class CpuMeter:
    """CPU seconds used by this process and its descendants, from a cpuacct cgroup (cgroup v1)."""

    def __init__(self):
        self.dir = Path(f"/sys/fs/cgroup/cpuacct/rftkit-bench-{os.getpid()}")
        try:
            self.dir.mkdir()
            (self.dir / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            self.dir = None

    def seconds(self) -> float | None:
        return int((self.dir / "cpuacct.usage").read_text()) / 1e9 if self.dir else None

    def close(self) -> None:
        if self.dir:
            parent = self.dir.parent / "cgroup.procs"
            parent.write_text(str(os.getpid()))
            self.dir.rmdir()


def pool_rate(grades: int, meter: CpuMeter) -> tuple[float, float | None]:
    """(grades/s, CPU seconds per grade) for the warm pool."""
    samples = [Sample("x" * (i % 17)) for i in range(grades)]
    items = [{"bonus": 0.5}] * grades
    with build_grader({"type": "python", "name": "trivial", "source": SOURCE}, GraderContext()) as grader:
        grade_batch(grader, samples[:200], items[:200])  # start the workers
        cpu_before = meter.seconds()
        batch = grade_batch(grader, samples, items)
        cpu_after = meter.seconds()
    assert batch.rewards == [(i % 17) + 0.5 for i in range(grades)], "wrong rewards"
    cpu = (cpu_after - cpu_before) / grades if cpu_before is not None else None
    return grades / batch.seconds, cpu


def fresh_sandbox_rate(grades: int) -> float:
    task = {"op": "grade", "key": "g", "sample": {"output_text": "xyz"}, "item": {"bonus": 0.5}, "wall": 10, "cpu": 10}
    start = time.perf_counter()
    for _ in range(grades):
        with SandboxPool(SandboxLimits(), {"g": SOURCE}, workers=1) as pool:
            assert pool.run([task])[0]["value"] == 3.5
    return grades / (time.perf_counter() - start)


def fresh_plain_rate(grades: int) -> float:
    code = SOURCE + "import json, sys\nprint(grade(json.loads(sys.argv[1]), json.loads(sys.argv[2])))"
    start = time.perf_counter()
    for _ in range(grades):
        out = subprocess.run([sys.executable, "-I", "-c", code, json.dumps({"output_text": "xyz"}), '{"bonus": 0.5}'],
                             capture_output=True, text=True, env={}, check=True).stdout
        assert float(out) == 3.5
    return grades / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grades", type=int, default=4000, help="grades for the warm pool")
    parser.add_argument("--fresh", type=int, default=40, help="grades for each fresh-process baseline")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"cores: {cores}  load average before: {os.getloadavg()[0]:.2f}")
    meter = CpuMeter()
    try:
        pool, cpu_per_grade = pool_rate(args.grades, meter)
    finally:
        meter.close()
    sandboxed = fresh_sandbox_rate(args.fresh)
    plain = fresh_plain_rate(args.fresh)
    print(f"{'warm pool':<28}{pool:>10.0f} grades/s")
    if cpu_per_grade is not None:
        print(f"{'  its CPU cost':<28}{cpu_per_grade * 1e6:>10.0f} us/grade -> {cores / cpu_per_grade:.0f} grades/s "
              f"on {cores} idle cores")
    print(f"{'fresh sandboxed process':<28}{sandboxed:>10.1f} grades/s   pool is {pool / sandboxed:.0f}x")
    print(f"{'fresh plain python process':<28}{plain:>10.1f} grades/s   pool is {pool / plain:.0f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
