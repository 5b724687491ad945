"""Projects cannot read each other's data, or the service's, through the files graders open:
tried through the real HTTP API of `rftkit serve`, with two keys."""

import sqlite3

import httpx
import pytest

from service_helpers import Server, create_key

COUNT_KEYS = "SELECT count(*) FROM api_keys"


def make_shop(path):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE products (id INTEGER, name TEXT)")
        db.executemany("INSERT INTO products VALUES (?, ?)", [(1, "pen"), (2, "ink"), (3, "pad")])
    return path


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("isolation")
    data, shared = root / "data", root / "shared"
    shared.mkdir()
    make_shop(shared / "shared.sqlite")
    keys = {"alpha": create_key(data, "alpha"), "beta": create_key(data, "beta")}
    (shared / "sneaky.sqlite").symlink_to(data / "rftkit.db")  # a link out of the shared folder
    server = Server(data, workers=0, args=("--grader-dir", str(shared))).start()
    yield server, keys, root
    server.stop()


def call(service, project, path, **kwargs):
    server, keys, _ = service
    return httpx.post(f"{server.url}/v1{path}", headers={"Authorization": f"Bearer {keys[project]}"}, timeout=60,
                      **kwargs)


def sql_grader(database):
    return {"type": "sql_execution", "name": "rows", "database": database,
            "input": "{{ sample.output_text }}", "reference": "{{ item.reference_sql }}"}


def run_sql(service, project, database, sql=COUNT_KEYS, reference=COUNT_KEYS):
    return call(service, project, "/fine_tuning/alpha/graders/run",
                json={"grader": sql_grader(database), "model_sample": sql, "item": {"reference_sql": reference}})


@pytest.mark.parametrize("database", ["rftkit.db", "../rftkit.db", "files/../rftkit.db", "sneaky.sqlite", "ABSOLUTE"])
def test_a_sql_grader_cannot_open_the_service_database(service, database):
    _, _, root = service
    database = str(root / "data" / "rftkit.db") if database == "ABSOLUTE" else database
    reply = run_sql(service, "beta", database)
    assert reply.status_code == 400, reply.text
    assert "reward" not in reply.json() and "api_keys" not in reply.text.replace(COUNT_KEYS, "")
    validated = call(service, "beta", "/fine_tuning/alpha/graders/validate", json={"grader": sql_grader(database)})
    assert validated.status_code == 400


def test_a_project_uploads_its_database_and_only_it_may_use_it(service, tmp_path):
    shop = make_shop(tmp_path / "shop.sqlite")
    with shop.open("rb") as handle:
        uploaded = call(service, "alpha", "/files", data={"purpose": "user_data"},
                        files={"file": ("shop.sqlite", handle, "application/vnd.sqlite3")})
    assert uploaded.status_code == 200, uploaded.text
    file = uploaded.json()
    assert file["purpose"] == "user_data" and file["rftkit"]["rows"] == 1  # one table
    right = run_sql(service, "alpha", file["id"], "SELECT name FROM products WHERE id < 3",
                    "SELECT name FROM products WHERE id IN (1, 2)")
    assert right.status_code == 200 and right.json()["reward"] == 1.0
    wrong = run_sql(service, "alpha", file["id"], "SELECT name FROM products", "SELECT name FROM products WHERE id = 1")
    assert wrong.json()["reward"] == 0.0
    other = run_sql(service, "beta", file["id"], "SELECT 1", "SELECT 1")
    assert other.status_code == 400 and "no file" in other.json()["error"]["message"]
    (tmp_path / "fake.sqlite").write_text("not a database")
    with (tmp_path / "fake.sqlite").open("rb") as handle:
        refused = call(service, "alpha", "/files", data={"purpose": "user_data"},
                       files={"file": ("fake.sqlite", handle, "application/octet-stream")})
    assert refused.status_code == 400 and "not a SQLite database" in refused.json()["error"]["message"]


def test_the_operators_shared_folder_serves_every_project(service):
    for project in ("alpha", "beta"):
        reply = run_sql(service, project, "shared.sqlite", "SELECT count(*) FROM products", "SELECT 3")
        assert reply.status_code == 200 and reply.json()["reward"] == 1.0
    missing = run_sql(service, "alpha", "nowhere.sqlite", "SELECT 1", "SELECT 1")
    assert missing.status_code == 400 and "--grader-dir" in missing.json()["error"]["message"]


def test_jobs_are_held_to_the_same_rule(service, tmp_path):
    from helpers import write_jsonl

    _, _, root = service
    rows = [{"messages": [{"role": "user", "content": f"count products {i}"}], "reference_sql": "SELECT 3"}
            for i in range(4)]
    with write_jsonl(tmp_path / "train.jsonl", rows).open("rb") as handle:
        train = call(service, "beta", "/files", data={"purpose": "fine-tune"},
                     files={"file": ("train.jsonl", handle, "application/jsonl")}).json()["id"]
    model = str(root / "data")  # any name: the grader is checked first or the model is refused after
    for database, allowed in ((str(root / "data" / "rftkit.db"), False), ("rftkit.db", False),
                              ("shared.sqlite", True)):
        body = {"model": model, "training_file": train,
                "method": {"type": "reinforcement", "reinforcement": {"grader": sql_grader(database)}}}
        reply = call(service, "beta", "/fine_tuning/jobs", json=body)
        message = reply.json().get("error", {}).get("message", "")
        assert ("method.reinforcement.grader.database" in message) is not allowed, (database, message)


def test_models_by_path_resolve_only_in_the_projects_own_places(service):
    server, keys, root = service
    from rftkit.models.load import save_policy
    from rftkit.models.tiny import build_tiny

    model, tokenizer = build_tiny("tiny", seed=0)
    outside = save_policy(model, tokenizer, root / "elsewhere")  # not shared by the operator
    someone_elses = save_policy(model, tokenizer, root / "data" / "jobs" / "ftjob-notyours" / "run" / "model")
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for folder in (outside, someone_elses, root / "data"):
        reply = call(service, "beta", "/chat/completions", json={**chat, "model": str(folder)})
        assert reply.status_code == 404, (folder, reply.text)
        assert str(root) not in reply.json()["error"]["message"].replace(str(folder), "")
        loaded = call(service, "beta", "/load_lora_adapter", json={"lora_name": "x", "lora_path": str(folder)})
        assert loaded.status_code == 400 and "not a folder this project may load" in loaded.text
    shared_model = save_policy(model, tokenizer, root / "shared" / "tiny")  # the operator's --grader-dir is not --model-dir
    assert call(service, "beta", "/chat/completions", json={**chat, "model": str(shared_model)}).status_code == 404
