"""Kill the server (SIGKILL) in the middle of a job, start it again: the job resumes from its
last checkpoint and ends with every step's metrics exactly once."""

from __future__ import annotations

import json
import os
import signal
import shutil
from pathlib import Path

import httpx
import pytest

from service_helpers import Server, metrics_steps, reinforcement_method, rftkit_block, trainers_of, wait_for
from service_helpers import write_rl_files

STEPS = 12
KEY = "recovery-test-key"


def api(server: Server, method: str, path: str, **kwargs):
    reply = httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=30, **kwargs)
    assert reply.status_code == 200, reply.text
    return reply.json()


def start_job(server: Server, folder: Path) -> dict:
    train, valid = write_rl_files(folder)
    ids = [api(server, "POST", "/v1/files", data={"purpose": "fine-tune"}, files={"file": (p.name, p.read_bytes())})["id"]
           for p in (train, valid)]
    body = {"model": "tiny", "training_file": ids[0], "validation_file": ids[1], "seed": 3,
            "method": reinforcement_method(eval_interval=4),
            "rftkit": rftkit_block(STEPS, checkpoints={"interval": 3, "keep_last": 2})}
    return api(server, "POST", "/v1/fine_tuning/jobs", json=body)


def job_state(server: Server, job_id: str) -> dict:
    job = api(server, "GET", f"/v1/fine_tuning/jobs/{job_id}")
    assert job["status"] != "failed", job["error"]
    return job


@pytest.mark.parametrize("trainer_too", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["server-killed", "server-and-trainer-killed"])
def test_job_survives_a_server_crash(tmp_path, tiny_dir, trainer_too):
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_dir, data_dir / "models" / "tiny")
    server = Server(data_dir, env={"RFTKIT_API_KEY": KEY}).start()
    try:
        job = start_job(server, tmp_path / "files")
        wait_for(lambda: job_state(server, job["id"])["rftkit"]["steps_done"] >= 4, what="four steps")
        trainers = trainers_of(job["id"])
        server.kill()
        if trainer_too:  # as if the machine went down: no checkpoint on the way out
            for pid in trainers:
                os.kill(pid, signal.SIGKILL)
        server = Server(data_dir, env={"RFTKIT_API_KEY": KEY}).start()
        wait_for(lambda: job_state(server, job["id"])["status"] == "succeeded", what="the job to finish")
        events = api(server, "GET", f"/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 1000})["data"]
    finally:
        server.stop()
    assert metrics_steps(events) == list(range(1, STEPS + 1))
    messages = [e["message"] for e in events]
    assert "The server restarted; the job resumes from its last checkpoint" in messages
    assert sum(m.startswith("Resuming from checkpoint-") for m in messages) == 1
    run = data_dir / "jobs" / job["id"] / "run"
    in_file = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert in_file == list(range(1, STEPS + 1))
