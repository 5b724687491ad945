"""`rftkit train --ray --nproc 2`: two gloo trainer ranks as actors of a real local Ray instance.

The job writes the metrics of the same job in one process (to float rounding), with rank 0
alone speaking; killing one rank's actor mid-run fails the job within seconds, naming the rank,
with the last checkpoint kept, and `--resume` on Ray finishes it.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import assert_metrics_close, descendants_named, metrics_of, run_cli, start_training, write_job


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # each job starts its own local instance


def test_two_trainer_actors_train_as_one_process_does(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, steps=3)
    one = run_cli("train", job, "--out", tmp_path / "one", "--force")
    on_ray = run_cli("train", job, "--out", tmp_path / "ray", "--force", "--ray", "--nproc", "2")
    assert one.returncode == 0, one.stderr
    assert on_ray.returncode == 0, on_ray.stderr
    assert "starting 2 data-parallel ranks on Ray, one actor of 1 CPU each" in on_ray.stderr
    assert "on 2 ranks" in on_ray.stderr  # rank 0's own plan line, relayed from its actor
    assert on_ray.stderr.count("held-out evaluation") == 1  # rank 0 alone speaks
    assert [r["step"] for r in metrics_of(tmp_path / "ray")] == [1, 2, 3]
    assert_metrics_close(metrics_of(tmp_path / "ray"), metrics_of(tmp_path / "one"))
    for name in ("final.json", "model/model.safetensors", "checkpoint-3/state.json"):
        assert (tmp_path / "ray" / name).exists(), name


def rank_processes(root: int) -> dict[int, tuple[int, int]]:
    """{rank: (its process, its actor's process)} for the ranks under `root`."""
    found = {}
    for actor in descendants_named(root, b"ray::TrainerRank"):
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == actor:
                    variables = dict(v.split(b"=", 1) for v in (entry / "environ").read_bytes().split(b"\0")
                                     if b"=" in v)
                    if b"RANK" in variables:
                        found[int(variables[b"RANK"])] = (int(entry.name), actor)
            except (OSError, IndexError, ValueError):
                continue
    return found


def test_a_killed_trainer_actor_fails_the_job_quickly_and_resume_finishes_it(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, steps=30)
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    launcher = start_training(job, run, "--ray", "--nproc", "2", env=env)
    ranks = rank_processes(launcher.pid)
    assert sorted(ranks) == [0, 1], ranks
    rank_one, its_actor = ranks[1]
    os.kill(its_actor, signal.SIGKILL)
    killed = time.time()
    _, stderr = launcher.communicate(timeout=120)
    assert time.time() - killed < 60  # rank 0 noticed, or was stopped: nothing hangs
    assert launcher.returncode != 0
    assert "rank 1 of 2 lost its Ray actor" in stderr and "--resume" in stderr, stderr
    time.sleep(1)  # the rank's own process dies with its actor (PR_SET_PDEATHSIG)
    assert not Path(f"/proc/{rank_one}").exists() or "Z" in Path(f"/proc/{rank_one}/stat").read_text().split()[2]
    resumed = run_cli("train", job, "--out", run, "--resume", "--ray", "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert [r["step"] for r in metrics_of(run)][-1] == 30


def test_ray_under_torchrun_is_refused_in_one_line(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, steps=1)
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0"}
    result = subprocess.run([sys.executable, "-m", "rftkit.cli", "train", str(job), "--out", str(tmp_path / "run"),
                             "--ray"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: rank 0: --ray does not combine with torchrun: torchrun has placed the ranks")
    assert not (tmp_path / "run").exists()
