"""endpoint: a real local server with the Bedrock reward-Lambda contract; batching, metrics as
sub-rewards, and failures (missing ids, errors, bad values) counted per sample."""

from rftkit.graders import build_grader, grade_batch
from rftkit.types import Sample


def lambda_reply(records):
    """Reward = the share of the answer's words found in metadata.answer; one metric."""
    out = []
    for record in reversed(records):  # any order: matched by id
        answer = record["messages"][-1]["content"]
        if answer == "skip":
            continue
        score = float(answer == record["metadata"]["answer"])
        out.append({"id": record["id"], "aggregate_reward_score": "bad" if answer == "bad" else score,
                    "metrics_list": [{"name": "exact", "value": score, "type": "Reward"},
                                     {"name": "length", "value": len(answer), "type": "Metric"}]})
    return out


def test_batches_metrics_and_order(serve, judge_context):
    server = serve(lambda path, body: (200, lambda_reply(body)))
    grader = build_grader({"type": "endpoint", "name": "svc", "url": server.url + "/reward", "batch_size": 2},
                          judge_context(server.url))
    item = {"messages": [{"role": "user", "content": "2+2?"}], "answer": "4"}
    grades = grader.grade_many([Sample(t) for t in ["4", "5", "4", "44", "4"]], [item] * 5)
    assert [g.reward for g in grades] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert grades[3].sub_rewards == {"exact": 0.0, "length": 2.0}
    assert sorted(len(r["body"]) for r in server.requests) == [1, 2, 2]  # batches go out concurrently
    first = next(r["body"][0] for r in server.requests if r["body"][0]["id"] == "0")
    assert first["messages"] == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert first["metadata"] == {"answer": "4"} and first["id"] == "0"


def test_missing_ids_bad_values_and_a_failing_server(serve, judge_context):
    server = serve(lambda path, body: (200, lambda_reply(body)))
    grader = build_grader({"type": "endpoint", "name": "svc", "url": server.url + "/r"}, judge_context(server.url))
    item = {"messages": [{"role": "user", "content": "q"}], "answer": "a"}
    batch = grade_batch(grader, [Sample("a"), Sample("skip"), Sample("bad")], [item] * 3)
    assert batch.rewards == [1.0, 0.0, 0.0]
    assert batch.grades[1].metadata["errors"]["unresponsive_reward_error"] is True
    assert batch.grades[2].metadata["errors"]["other_error"] is True

    down = serve(lambda path, body: (502, {"error": "bad gateway"}))
    grader = build_grader({"type": "endpoint", "name": "svc", "url": down.url + "/r"},
                          judge_context(down.url, judge_max_retries=2))
    grades = grader.grade_many([Sample("a")] * 3, [item] * 3)
    assert all(g.metadata["errors"]["unresponsive_reward_error"] for g in grades)
    assert len(down.requests) == 3  # one batch, tried three times
