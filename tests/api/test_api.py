"""The REST API in-process (FastAPI's TestClient on the real app and a real SQLite store).
The server runs no training here (workers=0): jobs are validated and stay queued."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from helpers import write_jsonl
from rftkit.api import ServiceSettings, create_app
from rftkit.jobs.db import metadata
from rftkit.jobs.keys import create_key, revoke_key
from pg_server import postgres_url  # noqa: F401  (a fixture)
from service_helpers import GRADER, reinforcement_method, rftkit_block, write_rl_files


@pytest.fixture
def api(request, tmp_path, tiny_dir):
    db = request.getfixturevalue("postgres_url") if getattr(request, "param", "sqlite") == "postgresql" else None
    app = create_app(ServiceSettings(data_dir=tmp_path / "data", db=db, workers=0, poll_seconds=0.05,
                                     model_dirs=(Path(tiny_dir),)))
    if db:
        with app.state.service.store.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(text(f"DELETE FROM {table.name}"))
    engine = app.state.service.store.engine
    keys = {project: create_key(engine, project)[0] for project in ("alpha", "beta")}
    with TestClient(app) as client:
        yield client, keys, tmp_path, str(tiny_dir)


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def upload(client, key, path, name=None):
    with path.open("rb") as handle:
        return client.post("/v1/files", headers=auth(key), data={"purpose": "fine-tune"},
                           files={"file": (name or path.name, handle, "application/jsonl")})


def new_job(client, key, tmp_path, model, file_id=None, **headers):
    if file_id is None:
        train, _ = write_rl_files(tmp_path / "files")
        file_id = upload(client, key, train).json()["id"]
    body = {"model": model, "training_file": file_id, "method": reinforcement_method(), "rftkit": rftkit_block(3)}
    return client.post("/v1/fine_tuning/jobs", headers={**auth(key), **headers}, json=body)


def test_requests_without_a_valid_key_get_401(api, monkeypatch):
    client, keys, _, _ = api
    assert client.get("/v1/fine_tuning/jobs").status_code == 401
    bad = client.get("/v1/fine_tuning/jobs", headers=auth(keys["alpha"][:-2] + "xx"))
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"
    assert client.get("/v1/fine_tuning/jobs", headers=auth(keys["alpha"])).status_code == 200
    revoke_key(client.app.state.service.store.engine, keys["alpha"].split("_")[1])
    assert client.get("/v1/fine_tuning/jobs", headers=auth(keys["alpha"])).status_code == 401
    monkeypatch.setenv("RFTKIT_API_KEY", "from-the-environment")
    assert client.get("/v1/files", headers=auth("from-the-environment")).status_code == 200
    assert client.get("/v1/files", headers=auth("from-the-environmenT")).status_code == 401


@pytest.mark.parametrize("api", ["sqlite", "postgresql"], indirect=True)
def test_a_key_sees_only_its_own_projects_files_and_jobs(api):
    client, keys, tmp_path, model = api
    job = new_job(client, keys["alpha"], tmp_path, model).json()
    file_id = job["training_file"]
    other = auth(keys["beta"])
    for path in (f"/v1/files/{file_id}", f"/v1/files/{file_id}/content", f"/v1/fine_tuning/jobs/{job['id']}",
                 f"/v1/fine_tuning/jobs/{job['id']}/events", f"/v1/fine_tuning/jobs/{job['id']}/checkpoints"):
        assert client.get(path, headers=other).status_code == 404, path
    assert client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=other).status_code == 404
    assert client.get("/v1/fine_tuning/jobs", headers=other).json()["data"] == []
    assert client.get("/v1/files", headers=other).json()["data"] == []
    body = {"model": model, "training_file": file_id, "method": reinforcement_method()}
    assert client.post("/v1/fine_tuning/jobs", headers=other, json=body).status_code == 400  # not its file
    assert client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=auth(keys["alpha"])).status_code == 200


def test_idempotency_key_creates_at_most_one_job(api):
    client, keys, tmp_path, model = api
    first = new_job(client, keys["alpha"], tmp_path, model, **{"Idempotency-Key": "k1"}).json()
    file_id = first["training_file"]
    again = new_job(client, keys["alpha"], tmp_path, model, file_id, **{"Idempotency-Key": "k1"}).json()
    other = new_job(client, keys["alpha"], tmp_path, model, file_id, **{"Idempotency-Key": "k2"}).json()
    assert first["id"] == again["id"] != other["id"]
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        new_job(client, keys["alpha"], tmp_path, model, file_id, **{"Idempotency-Key": "race"}).json()["id"]))
        for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and len(set(results)) == 1
    assert len(client.get("/v1/fine_tuning/jobs", headers=auth(keys["alpha"])).json()["data"]) == 3
    # the same key in another project is another request
    assert new_job(client, keys["beta"], tmp_path, model, **{"Idempotency-Key": "k1"}).json()["id"] != first["id"]


def test_idempotency_key_reused_with_another_body_answers_409(api):
    client, keys, tmp_path, model = api
    first = new_job(client, keys["alpha"], tmp_path, model, **{"Idempotency-Key": "k1"})
    assert first.status_code == 200
    other_file = upload(client, keys["alpha"], write_rl_files(tmp_path / "other")[0]).json()["id"]
    reused = new_job(client, keys["alpha"], tmp_path, model, other_file, **{"Idempotency-Key": "k1"})
    assert reused.status_code == 409, reused.text
    error = reused.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "idempotency_key_reused"
    assert error["param"] == "Idempotency-Key" and first.json()["id"] in error["message"]
    assert len(client.get("/v1/fine_tuning/jobs", headers=auth(keys["alpha"])).json()["data"]) == 1
    same = new_job(client, keys["alpha"], tmp_path, model, first.json()["training_file"], **{"Idempotency-Key": "k1"})
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]


def test_malformed_uploads_are_rejected_with_line_numbers(api):
    client, keys, tmp_path, _ = api
    rows = [{"messages": [{"role": "user", "content": "fine"}]}, "{not json",
            {"messages": [{"role": "bot", "content": "x"}]}, {"prompt": "no messages"}]
    reply = upload(client, keys["alpha"], write_jsonl(tmp_path / "bad.jsonl", rows), name="mine.jsonl")
    assert reply.status_code == 400
    message = reply.json()["error"]["message"]
    assert "mine.jsonl: 3 problem(s) in 4 rows" in message
    assert "mine.jsonl:2:" in message and "mine.jsonl:3: messages[0].role: unknown role 'bot'" in message
    assert "mine.jsonl:4: messages: missing" in message and str(tmp_path) not in message
    assert client.get("/v1/files", headers=auth(keys["alpha"])).json()["data"] == []
    assert not list((tmp_path / "data" / "files").iterdir())
    wrong = client.post("/v1/files", headers=auth(keys["alpha"]), data={"purpose": "batch"},
                        files={"file": ("a.jsonl", b"{}\n")})
    assert wrong.status_code == 400 and "purpose" in wrong.json()["error"]["message"]


def test_bad_job_bodies_answer_400_naming_the_field(api):
    client, keys, tmp_path, model = api
    train, _ = write_rl_files(tmp_path / "files")
    file_id = upload(client, keys["alpha"], train).json()["id"]
    headers = auth(keys["alpha"])
    typo = {"model": model, "training_file": file_id, "method": reinforcement_method(), "rftkit": {"group_sise": 4}}
    reply = client.post("/v1/fine_tuning/jobs", headers=headers, json=typo)
    assert reply.status_code == 400 and "rftkit.group_sise: unknown key (did you mean 'group_size'?)" in reply.text
    supervised = {"model": model, "training_file": file_id, "method": {"type": "supervised"}}
    reply = client.post("/v1/fine_tuning/jobs", headers=headers, json=supervised)
    assert reply.status_code == 400 and "holds reinforcement rows" in reply.text
    unsafe = reinforcement_method()
    unsafe["reinforcement"]["grader"] = {"type": "function", "name": "x", "function": "os:system"}
    reply = client.post("/v1/fine_tuning/jobs", headers=headers, json={**supervised, "method": unsafe})
    assert reply.status_code == 400 and "python grader" in reply.text
    missing = client.post("/v1/fine_tuning/jobs", headers=headers, json={**typo, "model": "no-such-model", "rftkit": {}})
    assert missing.status_code == 400 and "no model 'no-such-model'" in missing.text


def wait_status(client, key, job_id, wanted, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=auth(key)).json()
        if job["status"] == wanted:
            return job
        time.sleep(0.05)
    raise AssertionError(f"{job_id} is {job['status']}, not {wanted}")


@pytest.mark.parametrize("api", ["sqlite", "postgresql"], indirect=True)
def test_state_machine_over_http_with_409_error_objects(api):
    client, keys, tmp_path, model = api
    key = keys["alpha"]
    job = new_job(client, key, tmp_path, model).json()
    assert job["status"] == "validating_files"
    wait_status(client, key, job["id"], "queued")  # validated by the supervisor; workers=0 runs nothing
    base = f"/v1/fine_tuning/jobs/{job['id']}"
    assert client.post(f"{base}/resume", headers=auth(key)).status_code == 409
    assert client.post(f"{base}/pause", headers=auth(key)).json()["status"] == "paused"
    assert client.post(f"{base}/resume", headers=auth(key)).json()["status"] == "queued"
    assert client.post(f"{base}/cancel", headers=auth(key)).json()["status"] == "cancelled"
    again = client.post(f"{base}/cancel", headers=auth(key))
    assert again.status_code == 409
    assert again.json() == {"error": {"message": "cannot cancel a job that is cancelled", "type": "invalid_request_error",
                                      "param": None, "code": "invalid_state"}}
    events = client.get(f"{base}/events", headers=auth(key), params={"limit": 2}).json()
    assert [e["message"] for e in events["data"]] == ["Fine-tuning job cancelled",
                                                     "Resume requested: the job continues from its last checkpoint"]
    assert events["has_more"]
    rest = client.get(f"{base}/events", headers=auth(key), params={"after": events["data"][-1]["id"]}).json()
    assert [e["message"] for e in rest["data"]][-1] == "Validating training file" and not rest["has_more"]


def test_validation_failure_fails_the_job_with_the_reason(api):
    client, keys, tmp_path, model = api
    train, _ = write_rl_files(tmp_path / "files")
    file_id = upload(client, keys["alpha"], train).json()["id"]
    method = reinforcement_method()
    method["reinforcement"]["grader"] = {**GRADER, "reference": "{{ item.answer }}"}
    job = client.post("/v1/fine_tuning/jobs", headers=auth(keys["alpha"]),
                      json={"model": model, "training_file": file_id, "method": method}).json()
    failed = wait_status(client, keys["alpha"], job["id"], "failed")
    assert failed["error"]["code"] == "invalid_training_file"
    assert f"{file_id}:1: answer: missing, but the grader reads {{{{ item.answer }}}}" in failed["error"]["message"]


def test_graders_run_and_validate(api):
    client, keys, _, _ = api
    headers = auth(keys["alpha"])
    grader = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
              "reference": "{{ item.answer }}", "operation": "eq"}
    ran = client.post("/v1/fine_tuning/alpha/graders/run", headers=headers,
                      json={"grader": grader, "model_sample": "42", "item": {"answer": "42"}}).json()
    assert ran["reward"] == 1.0 and ran["metadata"]["errors"]["invalid_variable_error"] is False
    wrong = client.post("/v1/fine_tuning/alpha/graders/run", headers=headers,
                        json={"grader": grader, "model_sample": "41", "item": {"answer": "42"}}).json()
    assert wrong["reward"] == 0.0
    assert client.post("/v1/fine_tuning/alpha/graders/validate", headers=headers,
                       json={"grader": grader}).json() == {"grader": grader}
    bad = client.post("/v1/fine_tuning/alpha/graders/validate", headers=headers,
                      json={"grader": {**grader, "input": "{{ sample.text }}"}})
    assert bad.status_code == 400 and "sample has output_text" in bad.json()["error"]["message"]


def test_the_api_process_never_imports_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from rftkit.api import create_app, ServiceSettings; "
            f"create_app(ServiceSettings(data_dir={str(tmp_path)!r})); "
            "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_deleting_models_refuses_base_models_and_checkpoints_a_job_may_resume_from(api):
    client, keys, tmp_path, model = api
    headers = auth(keys["alpha"])
    job = new_job(client, keys["alpha"], tmp_path, model).json()
    refused = client.delete(f"/v1/models/{model}", headers=headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_deletable"
    assert "is a base model" in refused.json()["error"]["message"]
    assert client.delete("/v1/models/no-such-model", headers=headers).status_code == 404
    name = f"ft:{Path(model).name}:alpha::{job['id']}"
    assert client.delete(f"/v1/models/{name}", headers=headers).status_code == 404  # not trained yet
    wait_status(client, keys["alpha"], job["id"], "queued")
    folder = tmp_path / "data" / "jobs" / job["id"] / "run" / "checkpoint-1" / "model"
    folder.mkdir(parents=True)  # as a paused job's checkpoint
    conflict = client.delete(f"/v1/models/{name}:ckpt-step-1", headers=headers)
    assert conflict.status_code == 409 and "may resume from its checkpoints" in conflict.text and folder.is_dir()
    assert client.delete(f"/v1/models/{name}:ckpt-step-1", headers=auth(keys["beta"])).status_code == 404


def cancelled_job_with_checkpoints(client, key, tmp_path, model, steps, files=1):
    """A cancelled job and its `ft:` name, with checkpoint folders as its run would have left them."""
    job = new_job(client, key, tmp_path, model).json()
    wait_status(client, key, job["id"], "queued")
    assert client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=auth(key)).json()["status"] == "cancelled"
    for step in steps:
        folder = tmp_path / "data" / "jobs" / job["id"] / "run" / f"checkpoint-{step}" / "model"
        folder.mkdir(parents=True)
        for index in range(files):
            (folder / f"shard-{index}.bin").write_bytes(b"w" * 64)
    return job["id"], f"ft:{Path(model).name}:alpha::{job['id']}"


def test_a_model_other_jobs_are_based_on_is_not_deleted(api):
    client, keys, tmp_path, model = api
    headers = auth(keys["alpha"])
    base_id, name = cancelled_job_with_checkpoints(client, keys["alpha"], tmp_path, model, (1, 2))
    based = new_job(client, keys["alpha"], tmp_path, f"{name}:ckpt-step-1").json()
    assert based["status"] == "validating_files", based
    folder = tmp_path / "data" / "jobs" / base_id / "run" / "checkpoint-1" / "model"
    refused = client.delete(f"/v1/models/{name}:ckpt-step-1", headers=headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "invalid_state"
    assert based["id"] in refused.json()["error"]["message"] and folder.is_dir()
    # finished jobs too: a LoRA adapter keeps pointing at its base model's folder
    client.post(f"/v1/fine_tuning/jobs/{based['id']}/cancel", headers=headers)
    assert client.delete(f"/v1/models/{name}:ckpt-step-1", headers=headers).status_code == 409 and folder.is_dir()
    assert client.delete(f"/v1/models/{name}:ckpt-step-2", headers=headers).json()["deleted"]  # no job uses it


def test_of_concurrent_deletes_of_a_model_one_deletes_and_the_others_answer_404(api):
    client, keys, tmp_path, model = api
    _, name = cancelled_job_with_checkpoints(client, keys["alpha"], tmp_path, model, (1,), files=400)
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(
        client.delete(f"/v1/models/{name}:ckpt-step-1", headers=auth(keys["alpha"])).status_code)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [404] * 7


def test_model_errors_do_not_show_the_servers_paths(api):
    client, keys, tmp_path, model = api
    headers = auth(keys["alpha"])
    (tmp_path / "data" / "models" / "tiny").mkdir(parents=True)
    data_dir = str(tmp_path / "data")
    base = client.delete("/v1/models/tiny", headers=headers).json()["error"]["message"]
    unknown_chat = client.post("/v1/chat/completions", headers=headers, json={
        "model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}).json()["error"]["message"]
    unknown_job = new_job(client, keys["alpha"], tmp_path, "no-such-model").json()["error"]["message"]
    for message in (base, unknown_chat, unknown_job):
        assert "DATA_DIR/models" in message and data_dir not in message, message


@pytest.mark.parametrize("name", ["m" * 300, "/" + "d" * 300 + "/model", "ft:" + "x" * 2000, "a\x00b", "."])
def test_model_names_no_file_can_have_answer_4xx_before_the_file_system(api, name):
    client, keys, _, _ = api
    headers = auth(keys["alpha"])
    from urllib.parse import quote

    deleted = client.delete(f"/v1/models/{quote(name, safe='')}", headers=headers)
    chat = client.post("/v1/chat/completions", headers=headers,
                       json={"model": name, "messages": [{"role": "user", "content": "hi"}]})
    completion = client.post("/v1/completions", headers=headers, json={"model": name, "prompt": "hi"})
    for reply in (deleted, chat, completion):
        assert 400 <= reply.status_code < 500, reply.text
        assert isinstance(reply.json()["error"]["message"], str)


def test_path_like_names_are_not_hub_ids(api):
    client, keys, _, _ = api
    for name in ("../../etc/passwd", "data/jobs/ftjob-1/model", "a/../b"):
        reply = client.post("/v1/completions", headers=auth(keys["alpha"]), json={"model": name, "prompt": "hi"})
        assert reply.status_code == 404 and "hub id (org/name)" in reply.json()["error"]["message"], name


def test_junk_ids_cursors_and_keys_answer_4xx(api):
    client, keys, tmp_path, model = api
    headers = auth(keys["alpha"])
    job = new_job(client, keys["alpha"], tmp_path, model).json()
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", headers=headers,
                        params={"after": "ftevent-" + "9" * 40})
    assert events.status_code == 404, events.text
    for path in ("/v1/fine_tuning/jobs/" + "j" * 500, "/v1/files/" + "f" * 500, "/v1/files/%C3%A9"):
        assert client.get(path, headers=headers).status_code == 404, path
    long_key = new_job(client, keys["alpha"], tmp_path, model, job["training_file"], **{"Idempotency-Key": "k" * 256})
    assert long_key.status_code == 400 and "Idempotency-Key: 1 to 255" in long_key.json()["error"]["message"]
