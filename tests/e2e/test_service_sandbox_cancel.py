"""Cancelling a job whose grader sandboxes are busy, through a real `rftkit serve`: the trainer's
sandbox workers (each in a session of its own) are killed at once, and their cgroups and
temporary folders are removed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import pytest

from rftkit.graders.sandbox import SandboxLimits, SandboxPool, SandboxUnavailable
from rftkit.graders.sandbox.cgroups import WorkerCgroups
from rftkit.graders.sandbox.pool import owner_prefix
from service_helpers import rftkit_block, serve_tiny, trainers_of, wait_for, write_rl_files

SLEEPS_FOREVER = "import time\n\ndef grade(sample, item):\n    time.sleep(3600)\n    return 1.0\n"


@pytest.fixture(scope="module")
def sandbox_ready():
    try:
        with SandboxPool(SandboxLimits(workers=1)) as pool:
            pool.run([{"op": "ping"}])
    except SandboxUnavailable as err:
        pytest.skip(f"sandbox unavailable here: {err}")


def leftovers(trainer_pid: int) -> tuple[list[Path], set[int], list[Path]]:
    """The cgroups, the processes in them and the temporary folders of that trainer's workers."""
    prefix = owner_prefix(trainer_pid)
    cgroups = WorkerCgroups.left_by(prefix)
    return cgroups.dirs, cgroups.pids(), sorted(Path(tempfile.gettempdir()).glob(prefix + "*"))


def is_sandbox_process(pid: int) -> bool:
    """Whether `pid` is (still) a sandbox worker or grade, not an unrelated process given the number."""
    try:
        return b"sandbox/worker.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.slow  # about a minute here: a server, a trainer and its sandboxes start
def test_cancel_kills_busy_sandboxes_and_removes_their_cgroups_and_folders(tmp_path, tiny_dir, sandbox_ready):
    data_dir = tmp_path / "data"
    server, key = serve_tiny(data_dir, tiny_dir)
    try:
        http = httpx.Client(base_url=server.url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        train, _ = write_rl_files(tmp_path / "files")
        training = http.post("/files", files={"file": train.open("rb")}, data={"purpose": "fine-tune"}).json()
        grader = {"type": "python", "name": "sleeps", "source": SLEEPS_FOREVER}
        job = http.post("/fine_tuning/jobs", json={
            "model": "tiny", "training_file": training["id"], "rftkit": rftkit_block(50),
            "method": {"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": {"batch_size": 4}}},
        }).json()
        assert "id" in job, job
        trainer = wait_for(lambda: trainers_of(job["id"]), what="the trainer to start")[0]
        # keeper + PID 1 + a grade, in at least one worker: a grade is sleeping in the sandbox
        wait_for(lambda: len(leftovers(trainer)[1]) >= 3, what="a grade to be running in the sandbox")
        cgroups, pids, folders = leftovers(trainer)
        assert cgroups and folders
        assert http.post(f"/fine_tuning/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
        wait_for(lambda: not trainers_of(job["id"]), timeout=10, what="the trainer to be stopped")
        wait_for(lambda: leftovers(trainer) == ([], set(), []), timeout=10, what="the sandboxes to be cleaned up")
        assert not [pid for pid in pids if is_sandbox_process(pid)]
        assert not any(d.exists() for d in cgroups) and not any(f.exists() for f in folders)
    finally:
        server.stop()
