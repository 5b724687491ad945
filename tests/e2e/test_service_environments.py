"""Multi-turn environments under `rftkit serve`: an environment is code, so a job over the API may
name only a file in a directory the operator registered (`--environment-dir`), and an `openai`
rollout engine may neither reach a refused host nor name one of the server's secrets. Tried
through the real HTTP API."""

import json
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest

from helpers import write_jsonl
from service_helpers import Server, create_key
from unit.graders.conftest import ScriptedServer

CALCULATOR = Path(__file__).parents[1] / "unit" / "rollout" / "envs" / "calculator.py"
GRADER = {"type": "string_check", "name": "answer", "input": "{{ sample.output_text }}",
          "reference": "{{ item.answer }}", "operation": "eq"}


def start(root: Path, tiny_dir, *args):
    data = root / "data"
    key = create_key(data, "alpha")
    shutil.copytree(tiny_dir, data / "models" / "tiny", dirs_exist_ok=True)
    server = Server(data, workers=0, args=args).start()
    headers = {"Authorization": f"Bearer {key}"}
    rows = [{"messages": [{"role": "user", "content": f"{i}*3="}], "answer": str(3 * i)} for i in range(4)]
    with write_jsonl(root / "train.jsonl", rows).open("rb") as handle:
        train = httpx.post(f"{server.url}/v1/files", headers=headers, data={"purpose": "fine-tune"},
                           files={"file": ("train.jsonl", handle, "application/jsonl")}).json()["id"]
    return server, headers, train


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("environments")
    envs = root / "envs"
    envs.mkdir()
    shutil.copy(CALCULATOR, envs / "calculator.py")
    server, headers, train = start(root, tiny_dir, "--environment-dir", str(envs))
    yield server, headers, train, envs
    server.stop()


def job(server, headers, train, rftkit):
    body = {"model": "tiny", "training_file": train, "rftkit": rftkit,
            "method": {"type": "reinforcement", "reinforcement": {"grader": GRADER}}}
    return httpx.post(f"{server.url}/v1/fine_tuning/jobs", headers=headers, json=body, timeout=60)


def test_without_a_registered_directory_environments_are_refused(tmp_path, tiny_dir):
    server, headers, train = start(tmp_path, tiny_dir)
    try:
        reply = job(server, headers, train, {"environment": {"factory": "calculator.py:Calculator"}})
        assert reply.status_code == 400
        message = reply.json()["error"]["message"]
        assert "this server runs no environments" in message and "--environment-dir" in message
    finally:
        server.stop()


def test_a_job_names_a_registered_environment_by_relative_path(registered):
    server, headers, train, envs = registered
    reply = job(server, headers, train, {"environment": {"factory": "calculator.py:Calculator"}})
    assert reply.status_code == 200, reply.text
    stored = httpx.get(f"{server.url}/v1/fine_tuning/jobs/{reply.json()['id']}", headers=headers).json()
    assert stored["status"] in ("validating_files", "queued")
    with sqlite3.connect(Path(server.data_dir) / "rftkit.db") as db:  # the spec the worker will run
        spec, = db.execute("SELECT spec FROM jobs WHERE id = ?", (reply.json()["id"],)).fetchone()
    assert json.loads(spec)["rftkit"]["environment"]["factory"] == f"{(envs / 'calculator.py').resolve()}:Calculator"


@pytest.mark.parametrize("factory,expected", [
    ("../calculator.py:Calculator", "no absolute paths, no .."),
    (str(CALCULATOR) + ":Calculator", "no absolute paths, no .."),
    ("calculator:Calculator", "no absolute paths, no .., no module names"),
    ("os.py:system", "no file os.py"),
])
def test_environments_outside_the_registered_directories_are_refused(registered, factory, expected):
    server, headers, train, _ = registered
    reply = job(server, headers, train, {"environment": {"factory": factory}})
    assert reply.status_code == 400 and expected in reply.json()["error"]["message"], reply.text


def test_an_openai_engine_cannot_reach_the_servers_host_or_name_its_secrets(registered):
    server, headers, train, _ = registered
    trap = ScriptedServer(lambda path, body: (200, {}))
    try:
        reply = job(server, headers, train, {"engine": "openai", "engine_options": {"base_url": trap.url + "/v1"}})
        assert reply.status_code == 400 and "rftkit.engine_options.base_url" in reply.json()["error"]["message"]
        reply = job(server, headers, train, {"engine": "openai", "engine_options": {
            "base_url": "https://rollouts.example.com/v1", "api_key_env": "RFTKIT_API_KEY"}})
        assert reply.status_code == 400
        assert "cannot name one of the server's environment variables" in reply.json()["error"]["message"]
        assert trap.requests == []
    finally:
        trap.close()
