"""`rftkit train --ray`: a job on a real local Ray instance, against the same job in one process.

The job started with `--ray` (no address, no $RAY_ADDRESS: it starts a local Ray instance with 2
rollout actors and 1 grader actor) writes the metrics of the in-process run; an address nothing
answers at (`--ray ADDRESS`, `--ray-address ADDRESS`) is refused with one line before anything is loaded; a rollout actor
killed mid-run (with `restarts: 0`) fails the job with a checkpoint, and `--resume` finishes it.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from helpers import assert_metrics_close, descendants_named, metrics_of, run_cli, write_job


def test_a_ray_job_trains_as_one_process_does(tmp_path, tiny_dir, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    job = write_job(tmp_path, tiny_dir, steps=2)
    one = run_cli("train", job, "--out", tmp_path / "one", "--force")
    on_ray = run_cli("train", job, "--out", tmp_path / "ray", "--force", "--ray")
    assert one.returncode == 0, one.stderr
    assert on_ray.returncode == 0, on_ray.stderr
    assert "on Ray: 2 rollout and 1 grader actors of 1 CPU each" in on_ray.stderr
    mine, theirs = metrics_of(tmp_path / "ray"), metrics_of(tmp_path / "one")
    assert [r["step"] for r in mine] == [1, 2]
    for row, other in zip(mine, theirs):
        assert row.keys() == other.keys()
        for key, value in other.items():
            assert row[key] == (pytest.approx(value, rel=1e-5, abs=1e-6) if isinstance(value, float) else value), key
    assert (tmp_path / "ray" / "baseline.json").read_text() == (tmp_path / "one" / "baseline.json").read_text()


def test_an_asynchronous_ray_job_trains_as_the_asynchronous_job_in_one_process(tmp_path, tiny_dir, monkeypatch):
    """The rollout actors sample step t+1 while step t trains, as the in-process worker does; the
    validation after step 2 waits for the batch in flight before it pushes new weights."""
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    job = write_job(tmp_path, tiny_dir, steps=3, asynchronous={"max_staleness": 1})
    one = run_cli("train", job, "--out", tmp_path / "one", "--force")
    on_ray = run_cli("train", job, "--out", tmp_path / "ray", "--force", "--ray")
    assert one.returncode == 0, one.stderr
    assert on_ray.returncode == 0, on_ray.stderr
    mine = metrics_of(tmp_path / "ray")
    assert_metrics_close(mine, metrics_of(tmp_path / "one"))
    assert [r["staleness_mean"] for r in mine] == [0.0, 1.0, 1.0] and "is_ratio_mean" in mine[-1]


@pytest.mark.parametrize("flags", [["--ray-address", "127.0.0.1:1"], ["--ray", "127.0.0.1:1"], ["--ray=127.0.0.1:1"]])
def test_an_unreachable_ray_address_is_a_one_line_error(tmp_path, tiny_dir, flags):
    job = write_job(tmp_path, tiny_dir, steps=1)
    result = run_cli("train", job, "--out", tmp_path / "run", *flags, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    if "Ray, which is not installed" in result.stderr:  # a machine without the extra says so instead
        assert lines == [l for l in lines if "pip install 'rftkit[ray]'" in l]
        return
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Ray cluster at 127.0.0.1:1: "), lines
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_a_killed_actor_without_restarts_fails_the_job_with_a_checkpoint_and_resume_finishes(tmp_path, tiny_dir):
    pytest.importorskip("ray")
    job = write_job(tmp_path, tiny_dir, steps=4, ray={"restarts": 0})
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "rftkit.cli", "train", str(job), "--out", str(tmp_path / "run"), "--force",
               "--ray"]
    job_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    actors = descendants_named(job_process.pid, b"ray::RolloutWorker")
    assert len(actors) == 2, actors
    os.kill(actors[0], signal.SIGKILL)
    _, stderr = job_process.communicate(timeout=120)
    assert job_process.returncode == 2, stderr
    error = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and re.search(r"rollout actor \d died", error[0]), stderr  # the killed one, either
    assert error[0].endswith("continue with --resume")
    step = int(error[0].split("failed at step ")[1].split(":")[0])
    assert 1 <= step < 4 and (tmp_path / "run" / f"checkpoint-{step}").exists()
    resumed = run_cli("train", job, "--out", tmp_path / "run", "--resume", "--ray")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and [r["step"] for r in metrics_of(tmp_path / "run")][-1] == 4
