"""Endpoints and judges that time out, answer invalid JSON, the wrong shape or an error status,
against real local servers: each is that sample's error with reward 0 (never the run's end),
the error says what was expected, and nothing of the server's body comes back to the caller."""

import threading

import pytest

from rftkit.graders import build_grader, grade_batch
from rftkit.types import Sample

SECRET = "s3cr3t-token-of-the-internal-service"
ITEM = {"messages": [{"role": "user", "content": "2+2?"}], "answer": "4"}
ENDPOINT = {"type": "endpoint", "name": "svc"}
JUDGE = {"type": "score_model", "name": "judge", "model": "m", "input": [{"role": "user", "content": "{{ sample.output_text }}"}]}


@pytest.fixture
def hanging(serve):
    """A server that takes every request and answers none until the test ends."""
    release = threading.Event()
    server = serve(lambda path, body: (release.wait(30), (200, []))[1])
    yield server
    release.set()


def only_error(grade, kind: str) -> str:
    errors = grade.metadata["errors"]
    assert grade.reward == 0.0 and errors[kind] is True, errors
    assert [k for k, v in errors.items() if v is True] == [kind]
    return errors[f"{kind}_details"]


def test_an_endpoint_that_times_out_is_each_samples_error(hanging, judge_context):
    context = judge_context(hanging.url, judge_timeout_seconds=0.2, judge_max_retries=1)
    with build_grader({**ENDPOINT, "url": hanging.url + "/r"}, context) as grader:
        batch = grade_batch(grader, [Sample("4"), Sample("5")], [ITEM] * 2)
    assert batch.rewards == [0.0, 0.0]
    for grade in batch.grades:
        details = only_error(grade, "unresponsive_reward_error")
        assert f"no answer from {hanging.url}/r within 0.2 s (gave up after 2 tries)" in details
    assert len(hanging.requests) == 2  # one batch, tried twice


def test_a_judge_that_times_out_is_a_server_error(hanging, judge_context):
    context = judge_context(hanging.url, judge_timeout_seconds=0.2, judge_max_retries=0)
    with build_grader(JUDGE, context) as grader:
        details = only_error(grader.grade(Sample("4"), ITEM), "model_grader_server_error")
    assert f"no answer from {hanging.url}/v1/chat/completions within 0.2 s (gave up after 1 try)" in details


@pytest.mark.parametrize("status, body, expected", [
    (200, f"<html>{SECRET}</html>".encode(), "answered HTTP 200 with a body that is not JSON (text/html, "),
    (200, {"secret": SECRET}, "the reply is a JSON dict; expected an array of records"),
    (200, [{"id": "0", "secret": SECRET}], "a reply record lacks aggregate_reward_score (expected"),
    (403, {"error": SECRET}, "answered HTTP 403; expected 200 with a JSON body"),
    (503, {"error": SECRET}, "answered HTTP 503 (gave up after 2 tries)"),
])
def test_an_endpoints_bad_answer_says_what_was_expected_never_its_body(serve, judge_context, status, body, expected):
    headers = {"Content-Type": "text/html"} if isinstance(body, bytes) else {}
    server = serve(lambda path, _body: (status, body, headers))
    with build_grader({**ENDPOINT, "url": server.url + "/r"}, judge_context(server.url, judge_max_retries=1)) as grader:
        grade = grader.grade(Sample("4"), ITEM)
    kind = "other_error" if "lacks" in expected else "unresponsive_reward_error"
    details = only_error(grade, kind)
    assert expected in details and SECRET not in str(grade.metadata)


@pytest.mark.parametrize("status, body, expected", [
    (200, f"not json {SECRET}".encode(), "answered HTTP 200 with a body that is not JSON (application/json, "),
    (200, {"secret": SECRET}, "the judge's reply is not a chat completion (expected choices[0].message)"),
    (401, {"error": {"message": SECRET}}, "answered HTTP 401; expected 200 with a JSON body"),
    (500, {"error": {"message": SECRET}}, "answered HTTP 500 (gave up after 2 tries)"),
])
def test_a_judges_bad_answer_says_what_was_expected_never_its_body(serve, judge_context, status, body, expected):
    server = serve(lambda path, _body: (status, body))
    with build_grader(JUDGE, judge_context(server.url, judge_max_retries=1)) as grader:
        grade = grader.grade(Sample("4"), ITEM)
    details = only_error(grade, "model_grader_server_error")
    assert expected in details and SECRET not in str(grade.metadata)


def test_a_url_that_cannot_be_requested_is_each_samples_error(judge_context):
    url = f"http://{'a' * 70}.example/r"  # a host label longer than DNS allows
    with build_grader({**ENDPOINT, "url": url}, judge_context(url, judge_max_retries=0)) as grader:
        details = only_error(grader.grade(Sample("4"), ITEM), "unresponsive_reward_error")
    assert details.startswith(f"{url} cannot be requested")
