"""What a SIGKILLed owner leaves of its sandboxes (a cancelled job's trainer is one): the
workers live on in sessions of their own, busy with a submission that never ends, until
`remove_leftovers` kills them and removes their cgroups and temporary folders."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rftkit.graders.sandbox import remove_leftovers
from rftkit.graders.sandbox.cgroups import WorkerCgroups
from rftkit.graders.sandbox.pool import owner_prefix

# An owner as the supervisor starts a trainer (a session of its own), grading code that sleeps forever.
OWNER = """
from rftkit.graders import GraderContext, build_grader
from rftkit.graders.sandbox import SandboxLimits
from rftkit.types import Sample

spec = {"type": "code_tests", "tests": [{"assert": "assert True"}], "time_limit_seconds": 60}
grader = build_grader(spec, GraderContext(sandbox=SandboxLimits(workers=2)))
sample = Sample("```python\\nimport time\\nwhile True:\\n    time.sleep(1)\\n```")
grader.grade_many([sample, sample], [{}, {}])
"""


def sandbox_processes(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if b"sandbox/worker.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                alive.append(pid)
        except OSError:
            pass
    return alive


def wait_until(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_owners_busy_sandboxes_are_killed_and_removed(sandbox_ready):
    owner = subprocess.Popen([sys.executable, "-c", OWNER], start_new_session=True)
    prefix = owner_prefix(owner.pid)
    try:
        # two workers, each with its keeper, PID 1 and a test case that sleeps
        wait_until(lambda: len(WorkerCgroups.left_by(prefix).pids()) >= 6, "both sandboxes to be busy")
    finally:
        os.killpg(owner.pid, signal.SIGKILL)  # what the supervisor does to a cancelled job's trainer
        owner.wait()
    cgroups = WorkerCgroups.left_by(prefix)
    pids, folders = cgroups.pids(), sorted(Path(tempfile.gettempdir()).glob(prefix + "*"))
    assert len(cgroups.dirs) >= 2 and len(folders) == 2
    assert len(sandbox_processes(pids)) >= 4  # they outlived their owner: its group did not hold them

    removed = remove_leftovers(owner.pid)

    assert set(removed) == {str(d) for d in cgroups.dirs} | {str(f) for f in folders}
    assert not any(d.exists() for d in cgroups.dirs) and not any(f.exists() for f in folders)
    assert sandbox_processes(pids) == []
    assert remove_leftovers(owner.pid) == []  # nothing of it is left to find


def test_an_owner_whose_pid_is_a_prefix_of_ours_names_none_of_our_sandboxes(sandbox_context):
    """Pid 1523's prefix must not find pid 15236's workers (looked up only: that pid may be someone's)."""
    from rftkit.graders import build_grader
    from rftkit.types import Sample

    with build_grader({"type": "python", "source": "def grade(s, i):\n    return 1.0"}, sandbox_context) as grader:
        assert grader.grade(Sample("x"), {}).reward == 1.0
        mine = {d for w in grader.pool.workers if w is not None for d in w.cgroups.dirs}
        assert mine and mine <= set(WorkerCgroups.left_by(owner_prefix(os.getpid())).dirs)
        shorter = owner_prefix(int(str(os.getpid())[:-1]))
        assert not mine & set(WorkerCgroups.left_by(shorter).dirs)
