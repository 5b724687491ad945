"""`rftkit serve --nproc 2`: each reinforcement job's trainer runs as 2 data-parallel ranks.

A job created over the API trains as 2 ranks; pausing it pauses both after their step with
rank 0's checkpoint, resuming finishes it with each step once, and its metrics are those of the
same job trained in one process. Cancelling a job stops every rank, a rank that dies fails the
job with the launcher's verdict as its error, and a job with fewer prompts a step than ranks
gets one rank per prompt.
"""

from __future__ import annotations

import os
import signal

import pytest

from helpers import assert_metrics_close, metrics_of, run_cli
from service_helpers import metrics_steps, openai_client, reinforcement_method, rftkit_block, serve_tiny, trainers_of
from service_helpers import wait_for, write_rl_files


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("service-nproc")
    server, key = serve_tiny(root / "data", tiny_dir, args=("--nproc", "2"))
    yield server, openai_client(server, key), root
    server.stop()


def start_job(client, folder, steps: int, batch_size: int = 4):
    train, _ = write_rl_files(folder)
    training = client.files.create(file=train.open("rb"), purpose="fine-tune")
    method = reinforcement_method(eval_interval=3)
    method["reinforcement"]["hyperparameters"]["batch_size"] = batch_size
    return client.fine_tuning.jobs.create(model="tiny", training_file=training.id, seed=5, method=method,
                                          extra_body={"rftkit": rftkit_block(steps, eval={"k": 4, "baseline": False})})


def status(client, job_id: str, *wanted: str):
    job = client.fine_tuning.jobs.retrieve(job_id)
    assert job.status != "failed" or "failed" in wanted, job.error
    return job.status in wanted and job


def steps_of(client, job_id: str) -> list[int]:
    return metrics_steps(list(client.fine_tuning.jobs.list_events(job_id, limit=1000)))


def test_a_job_of_two_ranks_pauses_resumes_and_trains_as_one_process(service, tmp_path):
    server, client, root = service
    job = start_job(client, root / "files-pause", steps=30)
    wait_for(lambda: len(steps_of(client, job.id)) >= 2, what="two steps")
    assert len(trainers_of(job.id)) >= 3  # the launcher and its two ranks
    assert client.fine_tuning.jobs.pause(job.id).status == "pausing"
    wait_for(lambda: status(client, job.id, "paused"), what="both ranks to pause")
    assert not trainers_of(job.id)
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    wait_for(lambda: status(client, job.id, "succeeded"), timeout=300, what="the resumed job to finish")
    assert steps_of(client, job.id) == list(range(1, 31))  # each step once, across the pause

    job_dir = root / "data" / "jobs" / job.id
    log = (job_dir / "worker.log").read_text()
    assert log.count("starting 2 data-parallel ranks") == 2 and "--nproc 2" in log
    one = run_cli("train", job_dir / "job.yaml", "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    assert_metrics_close(metrics_of(job_dir / "run"), metrics_of(tmp_path / "one"))


def test_cancelling_a_job_stops_every_rank(service):
    server, client, root = service
    job = start_job(client, root / "files-cancel", steps=500)
    wait_for(lambda: steps_of(client, job.id), what="training to begin")
    assert len(trainers_of(job.id)) >= 3
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    wait_for(lambda: not trainers_of(job.id), timeout=15, what="every rank to be stopped")


def rank_of(pid: int) -> int | None:
    try:
        environment = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return None
    return next((int(v[5:]) for v in environment if v.startswith(b"RANK=")), None)


def test_a_rank_that_dies_fails_the_job_with_the_reason(service):
    server, client, root = service
    job = start_job(client, root / "files-kill", steps=500)
    wait_for(lambda: steps_of(client, job.id), what="training to begin")
    (rank_1,) = [pid for pid in trainers_of(job.id) if rank_of(pid) == 1]
    os.kill(rank_1, signal.SIGKILL)
    failed = wait_for(lambda: status(client, job.id, "failed"), timeout=120, what="the job to fail")
    assert failed.error.code == "training_failed"
    assert "rank 1 of 2 was killed by SIGKILL" in failed.error.message, failed.error.message
    wait_for(lambda: not trainers_of(job.id), timeout=30, what="the other rank to be stopped")


def test_a_job_with_one_prompt_a_step_trains_in_one_process(service):
    server, client, root = service
    job = start_job(client, root / "files-one", steps=1, batch_size=1)
    wait_for(lambda: status(client, job.id, "succeeded"), what="the job to finish")
    log = (root / "data" / "jobs" / job.id / "worker.log").read_text()
    assert "data-parallel ranks" not in log and "--nproc" not in log
