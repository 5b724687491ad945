"""`rftkit feedback` through the real command: items from a run's samples, judgements imported,
agreement, export; bad lines exit 2 naming them; projects in one database stay apart."""

import json

from helpers import run_cli, write_jsonl

PROMPT = [{"role": "user", "content": "3+4="}]


def test_add_import_agree_and_export(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": 1, "split": "train", "line": 1, "prompt": PROMPT, "sample": i, "completion": c} for i, c in
            enumerate(["7", "8", "7"])]
    write_jsonl(run / "samples.jsonl", rows + [{**rows[0], "line": 2}])  # line 2 has one answer: no comparison
    added = run_cli("feedback", "add", "--samples", run / "samples.jsonl", cwd=tmp_path)
    assert added.returncode == 0 and "added 1 item(s) to sqlite:///runs/feedback.db" in added.stderr
    assert (tmp_path / "runs" / "feedback.db").exists()
    again = run_cli("feedback", "add", "--samples", run / "samples.jsonl", cwd=tmp_path)
    assert "added 0 item(s)" in again.stderr and "1 already there" in again.stderr
    assert run_cli("feedback", "criteria", "--add", "accuracy", cwd=tmp_path).stdout.split() == ["accuracy"]

    judged = write_jsonl(tmp_path / "judged.jsonl", [
        {"item_id": "run/train/1/1", "reviewer": "ann", "preferred": 0, "ratings": [{"accuracy": 5}, {"accuracy": 1}]},
        {"item_id": "run/train/1/1", "reviewer": "bob", "preferred": 1, "ratings": [{"accuracy": 4}, {"accuracy": 1}]}])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"item_id": "run/train/1/1", "reviewer": "x", "preferred": 5}])
    refused = run_cli("feedback", "import", bad, cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"{bad}:1: preferred: answer 5 does not exist (the item has answers 0-1)" in refused.stderr
    assert "imported 2 judgement(s)" in run_cli("feedback", "import", judged, cwd=tmp_path).stderr

    report = json.loads(run_cli("feedback", "agreement", "--json", cwd=tmp_path).stdout)
    assert report["reviewers"]["pairs"] == 1 and report["reviewers"]["preference_agreement"] == 0.0
    assert report["reviewers"]["ratings"]["accuracy"]["mean_abs_diff"] == 0.5
    assert run_cli("feedback", "list", "--pending-for", "ann", "--json", cwd=tmp_path).stdout == ""
    [pending] = run_cli("feedback", "list", "--pending-for", "carl", "--json", cwd=tmp_path).stdout.splitlines()
    assert json.loads(pending)["answers"] == ["7", "8"]

    assert run_cli("feedback", "export", "out.jsonl", cwd=tmp_path).returncode == 0
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(x["reviewer"], x["preferred"]) for x in lines] == [("ann", 0), ("bob", 1)]
    assert lines[0]["answers"][0] == {"text": "7", "sample_ref": f"{run / 'samples.jsonl'}:1"}
    other = run_cli("feedback", "list", "--project", "beta", "--json", cwd=tmp_path)
    assert other.returncode == 0 and other.stdout == ""


def test_prelabel_with_a_real_judge_server(tmp_path, monkeypatch):
    import re

    from unit.graders.conftest import ScriptedServer, _chat_reply

    def reply(_path, body):  # an OpenAI-compatible judge: "7" scores 9/10, anything else 2/10
        graded = re.search(r">>\n(.*)\n<</", body["messages"][1]["content"]).group(1)
        return 200, _chat_reply(json.dumps({"result": 9 if graded == "7" else 2}))

    judge = ScriptedServer(reply)
    try:
        items = write_jsonl(tmp_path / "items.jsonl", [{"item_id": "q1", "prompt": "3+4=", "answers": ["7", "8"]}])
        assert run_cli("feedback", "add", "--items", items, cwd=tmp_path).returncode == 0
        grader = tmp_path / "judge.json"
        grader.write_text(json.dumps({"type": "score_model", "name": "sums", "model": "judge", "range": [0, 10],
                                      "input": [{"role": "user", "content": "Right? {{ sample.output_text }}"}]}))
        done = run_cli("feedback", "prelabel", "--grader", grader, "--criterion", "accuracy", "--unsafe-below", "0.5",
                       "--judge-base-url", judge.url + "/v1", "--judge-api-key", "sk-test", cwd=tmp_path)
        assert done.returncode == 0 and "pre-labelled 1 item(s)" in done.stderr, done.stderr
        assert len(judge.requests) == 2  # one grade per answer
        again = run_cli("feedback", "prelabel", "--grader", grader, "--judge-base-url", judge.url + "/v1", cwd=tmp_path)
        assert "pre-labelled 0 item(s)" in again.stderr and len(judge.requests) == 2  # not twice
        from rftkit.feedback.store import FeedbackStore

        [label] = FeedbackStore(f"sqlite:///{tmp_path}/runs/feedback.db").judgements(status="prelabel")
        assert (label.reviewer, label.preferred, label.unsafe) == ("judge:sums", 0, [False, True])
        assert label.ratings == [{"accuracy": 5}, {"accuracy": 2}]
        bad = run_cli("feedback", "prelabel", "--grader", items, cwd=tmp_path)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
    finally:
        judge.close()
