"""`rftkit serve --ray`: the service's reinforcement jobs place rollouts and grading on Ray.

With `--ray local`, a job started over the API trains on a real local Ray instance (its worker
log says so) and succeeds, also as 2 trainer ranks on Ray actors (`--nproc 2`); with an address
nothing answers at, the job fails with the one-line error of `rftkit train --ray-address`, as
its error, not a hang.
"""

from __future__ import annotations

import pytest

from service_helpers import openai_client, reinforcement_method, rftkit_block, serve_tiny, wait_for, write_rl_files


def served(tmp_path, tiny_dir, ray: str, *args: str):
    server, key = serve_tiny(tmp_path / "data", tiny_dir, args=("--ray", ray, *args), env={"RAY_ADDRESS": ""})
    return server, openai_client(server, key)


def finished_job(client, tmp_path, steps: int):
    train, _ = write_rl_files(tmp_path / "files")
    training = client.files.create(file=train.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny", training_file=training.id, method=reinforcement_method(),
                                         extra_body={"rftkit": rftkit_block(steps, eval={"k": 4, "baseline": False})})
    return wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
                    timeout=300, what="the job to finish")


@pytest.mark.parametrize("args, says", [
    ((), "on Ray: 2 rollout and 1 grader actors"),
    (("--nproc", "2"), "starting 2 data-parallel ranks on Ray, one actor of 1 CPU each"),
], ids=["actors", "two-ranks"])
def test_a_served_job_trains_on_a_local_ray_instance(tmp_path, tiny_dir, args, says):
    pytest.importorskip("ray")
    server, client = served(tmp_path, tiny_dir, "local", *args)
    try:
        job = finished_job(client, tmp_path, steps=2)
        assert job.status == "succeeded", job.error
        log = next((tmp_path / "data" / "jobs").glob("*/worker.log")).read_text()
        assert says in log
    finally:
        server.stop()


def test_an_unreachable_cluster_fails_the_job_with_one_line(tmp_path, tiny_dir):
    server, client = served(tmp_path, tiny_dir, "127.0.0.1:1")
    try:
        job = finished_job(client, tmp_path, steps=1)
        assert job.status == "failed"
        message = job.error.message
        assert "cannot reach the Ray cluster at 127.0.0.1:1" in message or "pip install 'rftkit[ray]'" in message
    finally:
        server.stop()
