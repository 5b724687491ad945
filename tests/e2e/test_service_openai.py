"""The whole job lifecycle with the official `openai` client against a real `rftkit serve`."""

from __future__ import annotations

import shutil

import openai
import pytest

from service_helpers import Server, create_key, metrics_steps, reinforcement_method, rftkit_block, wait_for
from service_helpers import trainers_of, write_rl_files

STEPS = 24


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("service")
    data_dir = root / "data"
    shutil.copytree(tiny_dir, data_dir / "models" / "tiny")
    key = create_key(data_dir)
    server = Server(data_dir).start()
    yield server, openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0), root
    server.stop()


def all_events(client, job_id):
    return list(client.fine_tuning.jobs.list_events(job_id, limit=1000))


def status_of(client, job_id):
    job = client.fine_tuning.jobs.retrieve(job_id)
    assert job.status != "failed", job.error
    return job.status


def test_lifecycle_upload_train_pause_resume_checkpoints_chat(service):
    server, client, root = service
    train, valid = write_rl_files(root / "data-files")
    training = client.files.create(file=train.open("rb"), purpose="fine-tune")
    validation = client.files.create(file=valid.open("rb"), purpose="fine-tune")
    assert training.filename == "train.jsonl" and training.bytes == train.stat().st_size
    assert client.files.content(training.id).read() == train.read_bytes()

    create = dict(model="tiny", training_file=training.id, validation_file=validation.id, seed=3,
                  method=reinforcement_method(eval_interval=6), suffix="adds",
                  extra_body={"rftkit": rftkit_block(STEPS)}, extra_headers={"Idempotency-Key": "lifecycle-1"})
    job = client.fine_tuning.jobs.create(**create)
    assert client.fine_tuning.jobs.create(**create).id == job.id  # the same key creates at most one job
    assert job.status == "validating_files" and job.method.type == "reinforcement"

    wait_for(lambda: status_of(client, job.id) and metrics_steps(all_events(client, job.id)),
             what="the first step's metrics")
    paused = client.fine_tuning.jobs.pause(job.id)
    assert paused.status == "pausing"
    wait_for(lambda: status_of(client, job.id) == "paused", what="paused")
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    at = checkpoints[0].step_number
    assert 1 <= at < STEPS and checkpoints[0].fine_tuned_model_checkpoint.endswith(f":{job.id}:ckpt-step-{at}")
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.pause(job.id)  # already paused

    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    done = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
                    what="the job to finish")
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:tiny:default:adds:{job.id}"

    events = all_events(client, job.id)
    assert metrics_steps(events) == list(range(1, STEPS + 1))  # each step once, across the pause
    metrics = next(e for e in events if e.type == "metrics" and e.data["step"] == 6).data
    assert {"scores", "errors", "timing", "usage"} <= set(metrics)
    assert "train_grader_has_a_mean" in metrics["scores"] and "valid_reward_mean" in metrics["scores"]
    messages = [e.message for e in events]
    assert any(m.startswith("Job paused at step") for m in messages)
    assert any(m.startswith("Resuming from checkpoint") for m in messages)

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [STEPS, STEPS - 1]
    names = {m.id for m in client.models.list()}
    assert {"tiny", done.fine_tuned_model, checkpoints[0].fine_tuned_model_checkpoint} <= names

    for model in (done.fine_tuned_model, checkpoints[1].fine_tuned_model_checkpoint, "tiny"):
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "say a"}],
                                               max_tokens=8, seed=1)
        assert reply.choices[0].message.role == "assistant" and reply.usage.completion_tokens >= 1
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=f"ft:tiny:default:adds:{job.id}:ckpt-step-999",
                                       messages=[{"role": "user", "content": "hi"}])


def test_cancel_a_running_job_stops_its_worker(service):
    server, client, root = service
    train, _ = write_rl_files(root / "cancel-files")
    training = client.files.create(file=train.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny", training_file=training.id, method=reinforcement_method(),
                                         extra_body={"rftkit": rftkit_block(500)})
    wait_for(lambda: status_of(client, job.id) and metrics_steps(all_events(client, job.id)), what="training to begin")
    assert trainers_of(job.id)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    wait_for(lambda: not trainers_of(job.id), timeout=10, what="the trainer to be stopped")
    with pytest.raises(openai.ConflictError) as raised:
        client.fine_tuning.jobs.resume(job.id)
    assert "cannot resume a job that is cancelled" in str(raised.value)
    page = client.fine_tuning.jobs.list(limit=1)
    assert page.data[0].id == job.id and page.has_more
    older = client.fine_tuning.jobs.list(limit=1, after=job.id)
    assert older.data[0].id != job.id
