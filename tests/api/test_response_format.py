"""`response_format` is refused, never ignored: in a job spec and on the chat and completions routes."""

import httpx
import pytest

from rftkit.config import parse_job
from rftkit.errors import RftkitError
from service_helpers import Server, create_key, reinforcement_method, rftkit_block, write_rl_files

JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}


def job_body(model: str, training_file: str, response_format: dict | None) -> dict:
    method = reinforcement_method()
    method["reinforcement"]["response_format"] = response_format
    return {"model": model, "training_file": training_file, "method": method, "rftkit": rftkit_block(1)}


def test_a_job_with_a_json_schema_response_format_is_refused_naming_the_grader():
    with pytest.raises(RftkitError) as refused:
        parse_job(job_body("m", "t.jsonl", JSON_SCHEMA), "job.yaml")
    message = str(refused.value)
    assert "job.yaml: method.reinforcement: response_format: type 'json_schema' is not enforced" in message
    assert '"type": "json_schema"' in message  # the grader to reward the format with
    assert parse_job(job_body("m", "t.jsonl", {"type": "text"})).method.reinforcement.response_format == {"type": "text"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dir):
    data_dir = tmp_path_factory.mktemp("service") / "data"
    key = create_key(data_dir, "alpha")
    served = Server(data_dir, workers=0, args=("--model-dir", str(tiny_dir))).start()
    client = httpx.Client(base_url=served.url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=120)
    yield client, tmp_path_factory.mktemp("files"), str(tiny_dir)
    client.close()
    served.stop()


def test_the_api_refuses_a_job_with_a_json_schema_response_format(server):
    client, folder, model = server
    train, _ = write_rl_files(folder)
    with train.open("rb") as handle:
        file_id = client.post("/files", data={"purpose": "fine-tune"}, files={"file": (train.name, handle)}).json()["id"]
    refused = client.post("/fine_tuning/jobs", json=job_body(model, file_id, JSON_SCHEMA))
    assert refused.status_code == 400, refused.text
    assert "response_format" in refused.json()["error"]["message"] and "json_schema grader" in refused.text
    assert client.post("/fine_tuning/jobs", json=job_body(model, file_id, {"type": "text"})).status_code == 200


@pytest.mark.parametrize("response_format", [JSON_SCHEMA, {"type": "json_object"}, "json"])
def test_chat_and_completions_refuse_a_structured_response_format(server, response_format):
    client, _, model = server
    chat = client.post("/chat/completions", json={"model": model, "max_tokens": 4, "response_format": response_format,
                                                  "messages": [{"role": "user", "content": "hi"}]})
    legacy = client.post("/completions", json={"model": model, "max_tokens": 4, "prompt": "hi",
                                               "response_format": response_format})
    for reply in (chat, legacy):
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["message"].startswith("response_format: type")


def test_chat_with_a_text_response_format_answers(server):
    client, _, model = server
    reply = client.post("/chat/completions", json={"model": model, "max_tokens": 4, "response_format": {"type": "text"},
                                                   "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["role"] == "assistant"
