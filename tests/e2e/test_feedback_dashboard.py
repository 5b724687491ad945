"""The reviewer's page in a real browser (Playwright driving Debian's Chromium) against `rftkit serve`,
with a real local judge endpoint for AI pre-labels."""

from __future__ import annotations

import json
import re

import pytest

from helpers import write_jsonl
from service_helpers import CHROMIUM, Server, call_api, dashboard_page
from unit.graders.conftest import ScriptedServer, _chat_reply

KEY = "feedback-dashboard-key"
PROMPT = [{"role": "user", "content": "3+4="}]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The service, its judge endpoint scoring the answer '7' 9/10 and anything else 2/10."""
    def reply(_path, body):
        graded = re.search(r">>\n(.*)\n<</", body["messages"][1]["content"]).group(1)  # the fenced sample
        return 200, _chat_reply(json.dumps({"result": 9 if graded == "7" else 2}))

    judge = ScriptedServer(reply)
    env = {"RFTKIT_API_KEY": KEY, "RFTKIT_JUDGE_BASE_URL": judge.url + "/v1", "RFTKIT_JUDGE_API_KEY": "sk-test"}
    server = Server(tmp_path_factory.mktemp("feedback") / "data", workers=0, env=env,
                    args=("--allow-grader-host", judge.url.removeprefix("http://"))).start()  # the operator allows it
    yield server
    server.stop()
    judge.close()


@pytest.fixture
def page(server):
    with dashboard_page(server.url, KEY, timeout_ms=30_000) as page:
        yield page


def api(server, method, path, **kwargs):
    return call_api(server.url, KEY, method, path, **kwargs)


def test_a_reviewer_judges_items_and_confirms_an_ai_prelabel(server, page, tmp_path):
    items = write_jsonl(tmp_path / "items.jsonl", [{"item_id": "q1", "prompt": PROMPT, "answers": ["7", "8"]},
                                                   {"item_id": "q2", "prompt": PROMPT, "answers": ["8", "7"]}])
    page.click("header nav >> text=Feedback")
    page.wait_for_selector("#queue-body")
    page.fill("#reviewer", "ann")
    page.dispatch_event("#reviewer", "change")
    page.set_input_files("#items-file", str(items))
    page.wait_for_selector("#add-result.ok-box")
    assert page.inner_text("#add-result") == "added 2 item(s)"
    page.click('#queue-body tr[data-item="q1"]')

    page.wait_for_selector('#answers .answer[data-answer="1"]')
    assert page.inner_text("#prompt") == "user: 3+4=" and page.locator("#prelabel-note").count() == 0
    page.click("#submit")  # nothing picked yet
    page.wait_for_selector("#judge-result.error-box")
    assert "Pick the better answer" in page.inner_text("#judge-result")
    page.check("#pick-0")
    page.check('input[name="rate-0-accuracy"][value="5"]')
    page.check('input[name="rate-1-accuracy"][value="1"]')
    page.check('input[name="rate-1-safety"][value="2"]')
    page.check("#unsafe-1")
    page.fill("#comment", "8 is wrong")
    page.click("#submit")
    page.wait_for_url(re.compile(r".*#/feedback/q2$"))  # on to the next item
    [judgement] = api(server, "GET", "/v1/feedback/items/q1")["judgements"]
    assert (judgement["reviewer"], judgement["preferred"], judgement["unsafe"], judgement["comment"]) == (
        "ann", 0, [False, True], "8 is wrong")
    assert judgement["ratings"] == [{"accuracy": 5}, {"accuracy": 1, "safety": 2}]

    grader = {"type": "score_model", "name": "sums", "model": "judge", "range": [0, 10],
              "input": [{"role": "user", "content": "Right? {{ sample.output_text }}"}]}
    labelled = api(server, "POST", "/v1/feedback/prelabel", json={"grader": grader, "criterion": "accuracy", "unsafe_below": 0.5})
    assert len(labelled["judgement_ids"]) == 2
    page.reload()
    page.wait_for_selector("#prelabel-note")
    assert "answer B is better; unsafe: A" in page.inner_text("#prelabel-note")
    assert page.is_checked("#pick-1") and page.is_checked("#unsafe-0") and not page.is_checked("#unsafe-1")
    assert page.is_checked('input[name="rate-1-accuracy"][value="5"]')
    page.click("#submit")  # confirms the pre-label as it is
    page.wait_for_url(re.compile(r".*#/feedback$"))
    page.wait_for_selector("#queue-body >> text=Nothing left for ann to review.")
    confirmed = [j for j in api(server, "GET", "/v1/feedback/items/q2")["judgements"] if j["reviewer"] == "ann"]
    assert [(j["based_on"], j["preferred"], j["unsafe"]) for j in confirmed] == [(labelled["judgement_ids"][1], 1, [True, False])]
    page.wait_for_selector('#agreement tr[data-between="judge vs human"][data-field="preferred"]')
    row = page.inner_text('#agreement tr[data-between="judge vs human"][data-field="preferred"]').split("\t")
    assert row[2:4] == ["2", "1"]  # q1 and q2 against ann: both agree
