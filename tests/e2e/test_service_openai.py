"""The whole job lifecycle with the official `openai` client against a real `rftkit serve`."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from service_helpers import metrics_steps, openai_client, reinforcement_method, rftkit_block, serve_tiny, wait_for
from service_helpers import trainers_of, write_rl_files

STEPS = 24


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("service")
    server, key = serve_tiny(root / "data", tiny_dir)
    yield server, openai_client(server, key), root
    server.stop()


def all_events(client, job_id):
    return list(client.fine_tuning.jobs.list_events(job_id, limit=1000))


def start_job(client, folder, steps):
    """A reinforcement job on the tiny model over freshly uploaded data. Its untrained model writes
    random bytes, which may hold no 'a' at all, so the baseline check (its own tests elsewhere)
    is off: these tests are about what happens to the job after it starts."""
    train, _ = write_rl_files(folder)
    training = client.files.create(file=train.open("rb"), purpose="fine-tune")
    rftkit = rftkit_block(steps, eval={"k": 4, "baseline": False})
    return client.fine_tuning.jobs.create(model="tiny", training_file=training.id, method=reinforcement_method(),
                                          extra_body={"rftkit": rftkit})


def finished(client, job_id):
    return wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job_id)).status in ("succeeded", "failed") and j,
                    what="the job to finish")


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

    running = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).estimated_finish and j,
                       what="the first step's metrics, and an estimated finish from its time")
    assert running.status == "running" and running.estimated_finish >= int(time.time()) - 1
    paused = client.fine_tuning.jobs.pause(job.id)
    assert paused.status == "pausing"
    wait_for(lambda: status_of(client, job.id) == "paused", what="paused")
    assert client.fine_tuning.jobs.retrieve(job.id).estimated_finish is None
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    at = paused_at = checkpoints[0].step_number
    assert 1 <= at < STEPS and checkpoints[0].fine_tuned_model_checkpoint.endswith(f":{job.id}:ckpt-step-{at}")
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.pause(job.id)  # already paused

    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    done = finished(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:tiny:default:adds:{job.id}"
    assert done.estimated_finish is None
    rows = httpx.get(f"{server.url}/v1/fine_tuning/jobs/{job.id}/metrics",
                     headers={"Authorization": f"Bearer {client.api_key}"}).json()["data"]
    assert done.trained_tokens == sum(r["train_tokens"] for r in rows) > 0  # each step once, across the pause
    [result] = done.result_files
    assert client.files.retrieve(result).purpose == "fine-tune-results"
    lines = client.files.content(result).read().decode().splitlines()
    header = lines[0].split(",")
    assert header[0] == "step" and {"train_reward_mean", "train_tokens"} <= set(header)
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(1, STEPS + 1))
    at = header.index("train_tokens")
    assert sum(float(line.split(",")[at]) for line in lines[1:]) == done.trained_tokens

    events = all_events(client, job.id)
    assert metrics_steps(events) == list(range(1, STEPS + 1))  # each step once, across the pause
    # A pause that lands during a validation skips it (rl_job's contract), so only the validations
    # after the paused step are certain to have run: each of them reports its score.
    validated = [s for s in range(6, STEPS + 1, 6) if s > paused_at]
    assert validated
    for step in validated:
        metrics = next(e for e in events if e.type == "metrics" and e.data["step"] == step).data
        assert {"scores", "errors", "timing", "usage"} <= set(metrics)
        assert "train_grader_has_a_mean" in metrics["scores"] and "valid_reward_mean" in metrics["scores"], step
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
    job = start_job(client, root / "cancel-files", 500)
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


def test_delete_a_fine_tuned_model_and_a_checkpoint_but_not_a_base_model(service):
    server, client, root = service
    job = start_job(client, root / "delete-files", 2)
    done = finished(client, job.id)
    assert done.status == "succeeded", done.error
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job.id).data[0].fine_tuned_model_checkpoint
    say = [{"role": "user", "content": "say a"}]

    deleted = client.models.delete(done.fine_tuned_model)
    assert (deleted.id, deleted.object, deleted.deleted) == (done.fine_tuned_model, "model", True)
    names = {m.id for m in client.models.list()}
    assert done.fine_tuned_model not in names and {checkpoint, "tiny"} <= names
    for gone in (lambda: client.models.retrieve(done.fine_tuned_model),
                 lambda: client.chat.completions.create(model=done.fine_tuned_model, messages=say, max_tokens=4),
                 lambda: client.models.delete(done.fine_tuned_model)):
        with pytest.raises(openai.NotFoundError):
            gone()
    assert client.chat.completions.create(model=checkpoint, messages=say, max_tokens=4).choices
    assert client.models.delete(checkpoint).deleted
    assert checkpoint not in {m.id for m in client.models.list()}
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.models.delete("tiny")
    assert "is a base model" in str(refused.value)
    assert client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model == done.fine_tuned_model  # the job stays


def test_stream_a_chat_completion(service):
    server, client, _ = service
    say = dict(model="tiny", messages=[{"role": "user", "content": "say a"}], max_tokens=12, seed=5)
    whole = client.chat.completions.create(**say)
    chunks = list(client.chat.completions.create(**say, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant" and len({c.id for c in chunks}) == 1
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 2  # as tokens come
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens

    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json={**say, "stream": True},
                      headers={"Authorization": f"Bearer {client.api_key}"}, timeout=120) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in reply.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: {") for line in lines[:-1])
    with pytest.raises(openai.NotFoundError):  # errors come before the stream, as JSON
        client.chat.completions.create(**{**say, "model": "no-such-model"}, stream=True)
