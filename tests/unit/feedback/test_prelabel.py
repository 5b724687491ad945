"""AI-judge pre-labels through a real score_model grader and a local judge endpoint."""

import json
import re

import pytest

from rftkit.feedback import Answer, ComparisonItem, FeedbackStore
from rftkit.feedback.prelabel import prelabel
from unit.graders.conftest import ScriptedServer, _chat_reply, _judge_context

JUDGE = {"type": "score_model", "name": "sums", "model": "judge", "range": [0, 10],
         "input": [{"role": "user", "content": "Is this sum right? {{ sample.output_text }}"}]}


@pytest.fixture
def judge_server():
    def reply(path, body):
        graded = re.search(r">>\n(.*)\n<</", body["messages"][1]["content"]).group(1)  # the fenced sample
        if graded == "boom":
            return 500, {"error": "judge down"}
        return 200, _chat_reply(json.dumps({"steps": ["checked"], "result": 2 if graded == "8" else 9}))

    server = ScriptedServer(reply)
    yield server
    server.close()


def test_prelabels_come_from_the_judge_and_wait_for_people(tmp_path, judge_server):
    store = FeedbackStore(tmp_path / "f.db")
    prompt = [{"role": "user", "content": "3+4="}]
    store.add_items([ComparisonItem("q1", prompt, [Answer("7"), Answer("8")]),
                     ComparisonItem("q2", prompt, [Answer("7"), Answer("boom")])])
    result = prelabel(store, JUDGE, criterion="accuracy", unsafe_below=0.5,
                      context=_judge_context(judge_server.url, judge_max_retries=0))
    assert list(result.skipped) == ["q2"] and "model_grader_server_error" in result.skipped["q2"]
    [label] = store.judgements(status="prelabel")
    assert label.judgement_id == result.judgement_ids[0] and label.reviewer == "judge:sums" and label.source == "ai"
    assert label.preferred == 0  # 0.9 beats 0.2
    assert label.ratings == [{"accuracy": 5}, {"accuracy": 2}]  # 1 + round(4 x 0.9), 1 + round(4 x 0.2)
    assert label.unsafe == [False, True]
    assert store.records() == []  # nothing trains until a person confirms
    again = prelabel(store, JUDGE, criterion="accuracy", context=_judge_context(judge_server.url, judge_max_retries=0))
    assert again.judgement_ids == []  # q1 is labelled already; q2 fails again
