"""Projects cannot read each other's data, or the service's, through the files graders open or
the hosts they call: tried through the real HTTP API of `rftkit serve`, with two keys."""

import sqlite3

import httpx
import pytest

from service_helpers import Server, create_key, wait_for
from unit.graders.conftest import ScriptedServer, _chat_reply

COUNT_KEYS = "SELECT count(*) FROM api_keys"


def make_shop(path):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE products (id INTEGER, name TEXT)")
        db.executemany("INSERT INTO products VALUES (?, ?)", [(1, "pen"), (2, "ink"), (3, "pad")])
    return path


def reward_one(_path, body):
    return 200, [{"id": r["id"], "aggregate_reward_score": 1.0} for r in body]


@pytest.fixture(scope="module")
def trap():
    """A service on the server's own loopback that no project may reach: it answers anything,
    and records every request it gets."""
    server = ScriptedServer(lambda path, body: (200, _chat_reply('{"result": 1}') if "chat" in path
                                                else reward_one(path, body)[1]))
    yield server
    server.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory, trap):
    root = tmp_path_factory.mktemp("isolation")
    data, shared = root / "data", root / "shared"
    shared.mkdir()
    make_shop(shared / "shared.sqlite")
    keys = {"alpha": create_key(data, "alpha"), "beta": create_key(data, "beta")}
    (shared / "sneaky.sqlite").symlink_to(data / "rftkit.db")  # a link out of the shared folder
    env = {"RFTKIT_JUDGE_BASE_URL": trap.url + "/v1"}  # a judge on loopback that the operator did not allow
    server = Server(data, workers=0, env=env, args=("--grader-dir", str(shared))).start()
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


# ----------------------------------------------------------------------------- the hosts graders call

SCORE_MODEL = {"type": "score_model", "name": "judge", "model": "judge", "range": [0, 1],
               "input": [{"role": "user", "content": "Rate: {{ sample.output_text }}"}]}
REFUSED = "which graders over the API may not reach"


def endpoint(url):
    return {"type": "endpoint", "name": "svc", "url": url}


def run_grader(service, project, grader):
    return call(service, project, "/fine_tuning/alpha/graders/run", json={"grader": grader, "model_sample": "4"})


@pytest.mark.parametrize("target, reason", [
    ("TRAP", "127.0.0.1 is a loopback address"),
    ("LOCALHOST", "localhost resolves to 127.0.0.1, a loopback address"),
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "169.254.169.254 is a cloud-metadata"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is a cloud-metadata address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal is a cloud-metadata"),
    ("SCORE_MODEL", "the judge endpoint (RFTKIT_JUDGE_BASE_URL): 127.0.0.1 is a loopback address"),
])
def test_graders_cannot_reach_the_services_host_or_cloud_metadata(service, trap, target, reason):
    grader = (SCORE_MODEL if target == "SCORE_MODEL" else
              endpoint(trap.url + "/r" if target == "TRAP" else
                       trap.url.replace("127.0.0.1", "localhost") + "/r" if target == "LOCALHOST" else target))
    for project in ("alpha", "beta"):
        reply = run_grader(service, project, grader)
        assert reply.status_code == 400, reply.text
        message = reply.json()["error"]["message"]
        assert reason in message and REFUSED in message and "--allow-grader-host" in message
        validated = call(service, project, "/fine_tuning/alpha/graders/validate", json={"grader": grader})
        assert validated.status_code == 400 and reason in validated.json()["error"]["message"]
        nested = {"type": "multi", "graders": {"a": grader}, "calculate_output": "a"}
        assert run_grader(service, project, nested).status_code == 400
    assert trap.requests == []


def test_a_grader_url_that_cannot_be_checked_answers_400(service):
    for url in ("http://judge:99999/r", "http://[::1/r"):
        reply = run_grader(service, "alpha", endpoint(url))
        assert reply.status_code == 400 and "is not a valid URL" in reply.json()["error"]["message"], reply.text


def test_jobs_that_call_a_refused_host_are_not_created(service, trap, tmp_path, tiny_dir):
    import shutil

    from helpers import write_jsonl

    _, _, root = service
    shutil.copytree(tiny_dir, root / "data" / "models" / "tiny", dirs_exist_ok=True)  # a base model it may name
    rows = [{"messages": [{"role": "user", "content": f"say {i}"}]} for i in range(4)]
    with write_jsonl(tmp_path / "train.jsonl", rows).open("rb") as handle:
        train = call(service, "beta", "/files", data={"purpose": "fine-tune"},
                     files={"file": ("train.jsonl", handle, "application/jsonl")}).json()["id"]
    for grader in (endpoint(trap.url + "/r"), SCORE_MODEL):
        body = {"model": "tiny", "training_file": train,
                "method": {"type": "reinforcement", "reinforcement": {"grader": grader}}}
        reply = call(service, "beta", "/fine_tuning/jobs", json=body)
        assert reply.status_code == 400 and REFUSED in reply.json()["error"]["message"], reply.text
    assert trap.requests == []


@pytest.fixture(scope="module")
def allowing(tmp_path_factory, trap, tiny_dir):
    """A server whose operator allows a local judge and a local reward service, each on its own
    port; the trap's port stays refused."""
    judge = ScriptedServer(lambda path, body: (200, _chat_reply('{"result": 0.75}')))
    rewards = ScriptedServer(reward_one)
    data = tmp_path_factory.mktemp("allowing") / "data"
    keys = {"alpha": create_key(data, "alpha"), "beta": create_key(data, "beta")}
    allowed = [arg for s in (judge, rewards) for arg in ("--allow-grader-host", s.url.removeprefix("http://"))]
    server = Server(data, workers=0, env={"RFTKIT_JUDGE_BASE_URL": judge.url + "/v1"},
                    args=(*allowed, "--model-dir", str(tiny_dir))).start()
    yield server, keys, data, judge, rewards
    server.stop()
    judge.close()
    rewards.close()


def test_hosts_the_operator_allows_are_reached(allowing, trap):
    server, keys, _, judge, rewards = allowing
    service = (server, keys, None)
    for project in ("alpha", "beta"):
        scored = run_grader(service, project, endpoint(rewards.url + "/reward"))
        assert scored.status_code == 200 and scored.json()["reward"] == 1.0, scored.text
        judged = run_grader(service, project, SCORE_MODEL)
        assert judged.status_code == 200 and judged.json()["reward"] == 0.75, judged.text
        refused = run_grader(service, project, endpoint(trap.url + "/r"))  # same host, a port not allowed
        assert refused.status_code == 400 and REFUSED in refused.json()["error"]["message"]
    assert len(rewards.requests) == 2 and len(judge.requests) == 2 and trap.requests == []


def test_a_queued_job_obeys_the_rule_of_the_server_that_trains_it(allowing, trap, tiny_dir, tmp_path):
    """A job accepted while its host was allowed, trained by a server that no longer allows it:
    its trainer (a worker process) refuses the host and the job fails with the reason."""
    from helpers import write_jsonl

    server, keys, data, _, rewards = allowing
    service, calls_before = (server, keys, None), len(rewards.requests)
    rows = [{"messages": [{"role": "user", "content": f"say something, take {i}"}]} for i in range(8)]
    with write_jsonl(tmp_path / "train.jsonl", rows).open("rb") as handle:
        train = call(service, "alpha", "/files", data={"purpose": "fine-tune"},
                     files={"file": ("train.jsonl", handle, "application/jsonl")}).json()["id"]
    body = {"model": str(tiny_dir), "training_file": train, "method": {"type": "reinforcement", "reinforcement": {
        "grader": endpoint(rewards.url + "/reward"), "hyperparameters": {"batch_size": 4}}},
        "rftkit": {"group_size": 2, "max_steps": 1, "device": "cpu"}}
    job = call(service, "alpha", "/fine_tuning/jobs", json=body)
    assert job.status_code == 200, job.text
    server.stop()
    strict = Server(data, workers=1, args=("--model-dir", str(tiny_dir))).start()  # nothing allowed
    try:
        def ended():
            reply = httpx.get(f"{strict.url}/v1/fine_tuning/jobs/{job.json()['id']}", timeout=30,
                              headers={"Authorization": f"Bearer {keys['alpha']}"}).json()
            return reply if reply["status"] in ("failed", "succeeded") else None

        finished = wait_for(ended, timeout=240, what="the job to end")
    finally:
        strict.stop()  # the module's last use of `allowing`, whose server stays stopped
    assert finished["status"] == "failed", finished
    assert "svc: url: 127.0.0.1 is a loopback address" in finished["error"]["message"]
    assert len(rewards.requests) == calls_before  # the trainer sent none


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_a_bad_allow_entry_stops_serve_with_the_fix(tmp_path, how):
    import os
    import subprocess
    import sys

    args = ["--allow-grader-host", "http://judge:8001"] if how == "flag" else []
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RFTKIT_API_KEY": "sk-x",
           **({"RFTKIT_ALLOW_GRADER_HOSTS": "10.0.0.0/8 http://judge:8001"} if how == "variable" else {})}
    result = subprocess.run([sys.executable, "-m", "rftkit.cli", "serve", "--data-dir", str(tmp_path / "data"),
                             "--port", "1", *args], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "--allow-grader-host: 'http://judge:8001' is not HOST, HOST:PORT or a CIDR network" in result.stderr
