"""/v1/feedback in-process (FastAPI's TestClient on the real app and a real SQLite store): items
from bodies, uploads and a job's samples, judgements and their errors, pre-labels from a real
local judge endpoint, agreement, export and import, and projects kept apart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from helpers import write_jsonl
from rftkit.api import ServiceSettings, create_app
from rftkit.jobs.keys import create_key
from service_helpers import reinforcement_method, rftkit_block, write_rl_files
from unit.graders.conftest import ScriptedServer, _chat_reply

PROMPT = [{"role": "user", "content": "3+4="}]
ITEMS = [{"item_id": f"q{i}", "prompt": PROMPT, "answers": ["7", "8"]} for i in (1, 2, 3)]


@pytest.fixture
def api(tmp_path, tiny_dir):
    app = create_app(ServiceSettings(data_dir=tmp_path / "data", workers=0, poll_seconds=0.05,
                                     model_dirs=(Path(tiny_dir),),
                                     grader_hosts=("127.0.0.1",)))  # the operator allows the local judge
    engine = app.state.service.store.engine
    keys = {"ann": create_key(engine, "alpha", "ann")[0], "bob": create_key(engine, "alpha", "bob")[0],
            "beta": create_key(engine, "beta")[0]}
    with TestClient(app) as client:
        yield client, {who: {"Authorization": f"Bearer {key}"} for who, key in keys.items()}


def judge(client, headers, item_id, **body):
    return client.post(f"/v1/feedback/items/{item_id}/judgements", headers=headers, json=body)


def test_items_queue_per_reviewer_and_pages_like_the_other_lists(api):
    client, keys = api
    added = client.post("/v1/feedback/items", headers=keys["ann"], json={"items": ITEMS}).json()
    assert added["added"] == ["q1", "q2", "q3"] and added["skipped"] == []
    assert judge(client, keys["ann"], "q1", preferred=0).json()["reviewer"] == "ann"  # the key's name
    first = client.get("/v1/feedback/items", headers=keys["ann"], params={"pending_for": "ann", "limit": 1}).json()
    assert [i["id"] for i in first["data"]] == ["q2"] and first["has_more"] and first["last_id"] == "q2"
    rest = client.get("/v1/feedback/items", headers=keys["ann"],
                      params={"pending_for": "ann", "after": first["last_id"]}).json()
    assert [i["id"] for i in rest["data"]] == ["q3"] and not rest["has_more"]
    assert len(client.get("/v1/feedback/items", headers=keys["bob"], params={"pending_for": "bob"}).json()["data"]) == 3
    item = client.get("/v1/feedback/items/q1", headers=keys["bob"]).json()
    assert item["answers"] == [{"text": "7", "sample_ref": None}, {"text": "8", "sample_ref": None}]
    assert [(j["reviewer"], j["preferred"], j["status"]) for j in item["judgements"]] == [("ann", 0, "final")]
    again = client.post("/v1/feedback/items", headers=keys["ann"], json={"items": ITEMS[:1]})
    assert again.status_code == 200 and again.json()["skipped"] == ["q1"]  # the same item again changes nothing
    other = client.post("/v1/feedback/items", headers=keys["ann"], json={"items": [{**ITEMS[0], "answers": ["7", "9"]}]})
    assert other.status_code == 400 and "items already in the store: q1" in other.json()["error"]["message"]


def test_bad_judgements_answer_404_or_400_naming_the_field(api):
    client, keys = api
    client.post("/v1/feedback/items", headers=keys["ann"], json={"items": ITEMS[:1]})
    missing = judge(client, keys["ann"], "nope", preferred=0)
    assert missing.status_code == 404 and "item_id: unknown item 'nope'" in missing.json()["error"]["message"]
    assert client.get("/v1/feedback/items/nope", headers=keys["ann"]).status_code == 404
    cases = [({"ratings": [{"accuracy": 9}, {"accuracy": 1}]}, "ratings[0].accuracy: 9 is out of range 1-5"),
             ({"ratings": [{}, {"tone": 3}]}, "ratings[1].tone: unknown criterion (known: accuracy, helpfulness, safety)"),
             ({"preferred": 2}, "preferred: answer 2 does not exist (the item has answers 0-1)"),
             ({"unsafe": [True]}, "unsafe: 1 entries for 2 answers"),
             ({"colour": "red"}, "colour: Extra inputs are not permitted")]
    for body, message in cases:
        reply = judge(client, keys["ann"], "q1", **body)
        assert reply.status_code == 400 and message in reply.json()["error"]["message"], (body, reply.text)
    assert client.get("/v1/feedback/items/q1", headers=keys["ann"]).json()["judgements"] == []
    assert client.post("/v1/feedback/judgements/999/confirm", headers=keys["ann"]).status_code == 404


def test_agreement_between_two_reviewers_matches_the_hand_count(api):
    client, keys = api
    client.post("/v1/feedback/items", headers=keys["ann"], json={"items": ITEMS})
    verdicts = {"ann": [(0, [5, 1], [False, True]), (0, [4, 2], [False, False]), (1, [2, 4], [False, False])],
                "bob": [(0, [4, 1], [False, False]), (1, [4, 3], [False, False]), (1, [2, 5], [False, False])]}
    for who, judged in verdicts.items():
        for item, (preferred, accuracy, unsafe) in zip(("q1", "q2", "q3"), judged):
            ratings = [{"accuracy": value} for value in accuracy]
            assert judge(client, keys[who], item, preferred=preferred, ratings=ratings, unsafe=unsafe).status_code == 200
    report = client.get("/v1/feedback/agreement", headers=keys["ann"]).json()
    people = report["reviewers"]
    assert report["reviewer_counts"] == {"ann": 3, "bob": 3} and people["pairs"] == 3
    # preferred: (0,0) (0,1) (1,1); chance = (2*1 + 1*2) / 9 = 4/9; kappa = (2/3 - 4/9) / (5/9)
    assert people["preference_agreement"] == pytest.approx(2 / 3)
    assert people["preference_kappa"] == pytest.approx(0.4)
    # unsafe, six answers: one disagreement; bob never flags, so chance = 30/36 = observed: kappa 0
    assert people["unsafe_agreement"] == pytest.approx(5 / 6) and people["unsafe_kappa"] == pytest.approx(0.0)
    # accuracy: (5,4) (1,1) (4,4) (2,3) (2,2) (4,5); chance = (1*1 + 1*1 + 2*2 + 2*1) / 36 = 8/36
    assert people["ratings"]["accuracy"] == {"pairs": 6, "exact": 0.5, "mean_abs_diff": 0.5,
                                             "kappa": pytest.approx((1 / 2 - 8 / 36) / (1 - 8 / 36))}
    assert report["judge_vs_human"]["pairs"] == 0


def test_export_then_import_into_another_project_round_trips_and_projects_stay_apart(api, tmp_path):
    client, keys = api
    client.post("/v1/feedback/items", headers=keys["ann"], json={"items": ITEMS[:2]})
    judge(client, keys["ann"], "q1", preferred=0, ratings=[{"safety": 5}, {"safety": 2}], unsafe=[False, True],
          comment="8 is wrong")
    judge(client, keys["bob"], "q2", preferred=None)
    exported = client.get("/v1/feedback/export", headers=keys["ann"])
    assert exported.headers["content-disposition"] == 'attachment; filename="feedback-alpha.jsonl"'
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert [(x["item_id"], x["reviewer"], x["preferred"], x["unsafe"]) for x in lines] == [
        ("q1", "ann", 0, [False, True]), ("q2", "bob", None, [])]

    beta = keys["beta"]
    assert client.get("/v1/feedback/items", headers=beta).json()["data"] == []
    assert client.get("/v1/feedback/items/q1", headers=beta).status_code == 404
    assert judge(client, beta, "q1", preferred=0).status_code == 404
    assert client.get("/v1/feedback/export", headers=beta).text == ""
    imported = client.post("/v1/feedback/import", headers=beta, files={"file": ("alpha.jsonl", exported.content)})
    assert imported.json()["imported"] == 2
    assert client.get("/v1/feedback/export", headers=beta).text == exported.text
    assert judge(client, beta, "q1", preferred=1).json()["reviewer"] == "beta"  # a key without a name: its project
    assert len(client.get("/v1/feedback/export", headers=keys["ann"]).text.splitlines()) == 2

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"item_id": "q1", "reviewer": "x", "ratings": [{"accuracy": 7}, {}]},
                                               {"item_id": "zz", "reviewer": "x"}])
    reply = client.post("/v1/feedback/import", headers=beta, files={"file": ("mine.jsonl", bad.read_bytes())})
    message = reply.json()["error"]["message"]
    assert reply.status_code == 400 and "mine.jsonl:1: ratings[0].accuracy: 7 is out of range" in message
    assert "mine.jsonl:2: item_id: unknown item 'zz'" in message and "rftkit-feedback" not in message


def test_items_from_an_uploaded_file_name_its_bad_lines(api, tmp_path):
    client, keys = api
    rows = [{"prompt": "hi", "answers": ["a", "b"]}, {"prompt": "hi", "answers": ["a"]}, "{oops"]
    path = write_jsonl(tmp_path / "items.jsonl", rows)
    reply = client.post("/v1/feedback/items", headers=keys["ann"], files={"file": ("mine.jsonl", path.read_bytes())})
    message = reply.json()["error"]["message"]
    assert reply.status_code == 400 and "mine.jsonl:2: answers: 1 given" in message and "mine.jsonl:3: invalid JSON" in message
    write_jsonl(path, rows[:1])
    added = client.post("/v1/feedback/items", headers=keys["ann"], files={"file": ("mine.jsonl", path.read_bytes())})
    [item_id] = added.json()["added"]
    assert client.get(f"/v1/feedback/items/{item_id}", headers=keys["ann"]).json()["source"] == "mine.jsonl"
    bad_body = client.post("/v1/feedback/items", headers=keys["ann"], json={"items": [{"prompt": "x", "answers": "ab"}]})
    assert bad_body.status_code == 400 and "items[0].answers" in bad_body.json()["error"]["message"]


def test_items_without_ids_from_several_posts_never_collide_and_the_same_item_again_is_skipped(api):
    client, keys = api
    post = lambda items: client.post("/v1/feedback/items", headers=keys["ann"], json={"items": items})  # noqa: E731
    first = post([{"prompt": "3+4=", "answers": ["7", "8"]}]).json()
    second = post([{"prompt": "1+1=", "answers": ["2", "3"]}]).json()
    assert len(first["added"]) == len(second["added"]) == 1 and first["added"] != second["added"]
    again = post([{"prompt": "3+4=", "answers": ["7", "8"]}])
    assert again.status_code == 200 and again.json() == {**first, "added": [], "skipped": first["added"]}
    upload = client.post("/v1/feedback/items", headers=keys["ann"],
                         files={"file": ("items.jsonl", b'{"prompt": "3+4=", "answers": ["7", "8"]}\n')})
    assert upload.json()["skipped"] == first["added"]


@pytest.mark.parametrize("filename, shown", [("..", ".."), (".", "."), ("a" * 300 + ".jsonl", "a" * 300 + ".jsonl"),
                                             ("../../etc/x.jsonl", "x.jsonl")])
def test_any_upload_file_name_is_only_a_name_in_messages(api, filename, shown):
    client, keys = api
    good = b'{"item_id": "u1", "prompt": "p", "answers": ["a", "b"]}\n'
    added = client.post("/v1/feedback/items", headers=keys["ann"], files={"file": (filename, good)})
    assert added.status_code == 200 and added.json()["added"] + added.json()["skipped"] == ["u1"]
    bad = client.post("/v1/feedback/items", headers=keys["ann"], files={"file": (filename, b'{"prompt": "p"}\n')})
    assert bad.status_code == 400 and f"{shown}:1: answers: Field required" in bad.json()["error"]["message"]
    feedback = b'{"item_id": "u1", "reviewer": "ann", "ratings": [{"accuracy": 9}, {}]}\n'
    imported = client.post("/v1/feedback/import", headers=keys["ann"], files={"file": (filename, feedback)})
    assert imported.status_code == 400 and f"{shown}:1: ratings[0].accuracy: 9" in imported.json()["error"]["message"]


def test_uploads_that_are_not_utf8_or_have_a_bad_sample_ref_answer_400_naming_them(api):
    client, keys = api
    latin1 = b'{"prompt": "caf\xe9", "answers": ["a", "b"]}\n'
    for route in ("items", "import"):
        reply = client.post(f"/v1/feedback/{route}", headers=keys["ann"], files={"file": ("mine.jsonl", latin1)})
        assert reply.status_code == 400 and "mine.jsonl:1: not UTF-8 text" in reply.json()["error"]["message"]
    row = {"item_id": "u2", "prompt": "p", "answers": [{"text": "a", "sample_ref": 5}, "b"]}
    reply = client.post("/v1/feedback/items", headers=keys["ann"],
                        files={"file": ("mine.jsonl", (json.dumps(row) + "\n").encode())})
    assert reply.status_code == 400 and "mine.jsonl:1: answers.0.sample_ref: Input should be a valid string" in reply.text
    reply = client.post("/v1/feedback/items", headers=keys["ann"], json={"items": [row]})
    assert reply.status_code == 400 and "items[0].answers.0.sample_ref: Input should be a valid string" in reply.text
    assert client.get("/v1/feedback/items", headers=keys["ann"]).json()["data"] == []


def new_job(client, headers, tmp_path, model) -> dict:
    train, _ = write_rl_files(tmp_path / "files")
    with train.open("rb") as handle:
        file_id = client.post("/v1/files", headers=headers, data={"purpose": "fine-tune"},
                              files={"file": (train.name, handle)}).json()["id"]
    body = {"model": model, "training_file": file_id, "method": reinforcement_method(), "rftkit": rftkit_block(2)}
    return client.post("/v1/fine_tuning/jobs", headers=headers, json=body).json()


def test_items_from_a_jobs_samples(api, tmp_path, tiny_dir):
    client, keys = api
    job = new_job(client, keys["ann"], tmp_path, str(tiny_dir))
    run_dir = client.app.state.service.store.job(job["id"])["run_dir"]
    rows = [{"step": 1, "split": "train", "line": 1, "prompt": PROMPT, "sample": i, "completion": c, "reward": 0.0}
            for i, c in enumerate(["7", "8", "7"])]
    body = {"job": job["id"]}
    early = client.post("/v1/feedback/items/from_samples", headers=keys["ann"], json=body)
    assert early.status_code == 400 and f"{job['id']}/samples.jsonl: no such file" in early.json()["error"]["message"]
    Path(run_dir).mkdir(parents=True)
    write_jsonl(Path(run_dir) / "samples.jsonl", rows)  # what the trainer writes
    added = client.post("/v1/feedback/items/from_samples", headers=keys["ann"], json=body).json()
    item_id = f"{job['id']}/train/1/1"
    assert added == {"object": "feedback.items_added", "added": [item_id], "skipped": []}
    assert client.post("/v1/feedback/items/from_samples", headers=keys["ann"], json=body).json()["skipped"] == [item_id]
    item = client.get(f"/v1/feedback/items/{item_id}", headers=keys["ann"]).json()
    assert [a["sample_ref"] for a in item["answers"]] == [f"{job['id']}/samples.jsonl:1", f"{job['id']}/samples.jsonl:2"]
    assert judge(client, keys["ann"], item_id, preferred=0).status_code == 200
    chosen = client.post("/v1/feedback/items/from_samples", headers=keys["ann"], json={**body, "lines": [1, 3]}).json()
    assert chosen["added"] == [f"{job['id']}/lines/1-3"]
    unknown = client.post("/v1/feedback/items/from_samples", headers=keys["ann"], json={**body, "lines": [1, 9]})
    message = unknown.json()["error"]["message"]
    assert unknown.status_code == 400 and f"{job['id']}/samples.jsonl: unknown sample line(s) 9" in message
    assert str(tmp_path) not in message
    assert client.post("/v1/feedback/items/from_samples", headers=keys["beta"], json=body).status_code == 404


@pytest.fixture
def judge_server(monkeypatch):
    """A real OpenAI-compatible judge on 127.0.0.1: answers '7' score 9/10, others 2/10."""
    def reply(_path, body):
        graded = re.search(r">>\n(.*)\n<</", body["messages"][1]["content"]).group(1)  # the fenced sample
        return 200, _chat_reply(json.dumps({"result": 9 if graded == "7" else 2}))

    server = ScriptedServer(reply)
    monkeypatch.setenv("RFTKIT_JUDGE_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("RFTKIT_JUDGE_API_KEY", "sk-test")
    yield server
    server.close()


def test_prelabels_from_a_judge_are_confirmed_or_corrected(api, judge_server):
    client, keys = api
    client.post("/v1/feedback/items", headers=keys["ann"], json={"items": ITEMS[:2]})
    grader = {"type": "score_model", "name": "sums", "model": "judge", "range": [0, 10],
              "input": [{"role": "user", "content": "Is this right? {{ sample.output_text }}"}]}
    wrong = client.post("/v1/feedback/prelabel", headers=keys["ann"], json={"grader": {"type": "string_check"}})
    assert wrong.status_code == 400 and "grader.type: 'string_check' cannot pre-label" in wrong.json()["error"]["message"]
    result = client.post("/v1/feedback/prelabel", headers=keys["ann"],
                         json={"grader": grader, "criterion": "accuracy", "unsafe_below": 0.5}).json()
    assert len(result["judgement_ids"]) == 2 and result["skipped"] == {} and len(judge_server.requests) == 4
    [label] = [j for j in client.get("/v1/feedback/items/q1", headers=keys["ann"]).json()["judgements"]]
    assert (label["reviewer"], label["status"], label["preferred"]) == ("judge:sums", "prelabel", 0)
    assert label["ratings"] == [{"accuracy": 5}, {"accuracy": 2}] and label["unsafe"] == [False, True]
    assert client.get("/v1/feedback/export", headers=keys["ann"]).text == ""  # pre-labels never train
    first, second = result["judgement_ids"]
    confirmed = client.post(f"/v1/feedback/judgements/{first}/confirm", headers=keys["ann"]).json()
    assert (confirmed["reviewer"], confirmed["based_on"], confirmed["preferred"]) == ("ann", first, 0)
    corrected = client.post(f"/v1/feedback/judgements/{second}/confirm", headers=keys["ann"],
                            json={"preferred": None, "comment": "both fine"}).json()
    assert corrected["preferred"] is None and corrected["ratings"] == label["ratings"]
    again = client.post(f"/v1/feedback/judgements/{corrected['id']}/confirm", headers=keys["ann"])
    assert again.status_code == 400 and "is not a pre-label" in again.json()["error"]["message"]
    judge_vs_human = client.get("/v1/feedback/agreement", headers=keys["ann"]).json()["judge_vs_human"]
    assert judge_vs_human["confirmed_unchanged"] == 1 and judge_vs_human["corrected"] == 1
    assert judge_vs_human["preference_agreement"] == 0.5


def test_criteria_are_per_project_and_name_the_default_reviewer(api):
    client, keys = api
    listed = client.get("/v1/feedback/criteria", headers=keys["bob"]).json()
    assert [c["name"] for c in listed["data"]] == ["accuracy", "helpfulness", "safety"] and listed["reviewer"] == "bob"
    added = client.post("/v1/feedback/criteria", headers=keys["bob"], json={"name": "tone", "description": "polite"})
    assert {"name": "tone", "description": "polite"}.items() <= added.json()["data"][-1].items()
    bad = client.post("/v1/feedback/criteria", headers=keys["bob"], json={"name": "two words"})
    assert bad.status_code == 400 and "criterion 'two words'" in bad.json()["error"]["message"]
    assert "tone" not in [c["name"] for c in client.get("/v1/feedback/criteria", headers=keys["beta"]).json()["data"]]
    assert client.get("/v1/feedback/criteria").status_code == 401
