"""The dashboard in a real browser (Playwright driving Debian's Chromium) against `rftkit serve`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from helpers import write_jsonl
from service_helpers import (CHROMIUM, GRADER, Server, call_api, dashboard_page, reinforcement_method, rftkit_block,
                             wait_for, write_rl_files)

KEY = "dashboard-test-key"
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("dashboard")
    shutil.copytree(tiny_dir, root / "data" / "models" / "tiny")
    server = Server(root / "data", env={"RFTKIT_API_KEY": KEY}).start()
    yield server
    server.stop()


@pytest.fixture
def page(server):
    with dashboard_page(server.url, KEY) as page:
        yield page


def api(server, method, path, **kwargs):
    return call_api(server.url, KEY, method, path, **kwargs)


def upload(server, path: Path) -> str:
    return api(server, "POST", "/v1/files", data={"purpose": "fine-tune"}, files={"file": (path.name, path.read_bytes())})["id"]


def reward_points(page) -> int:
    count = page.get_attribute('[data-chart="reward"] polyline[data-series="train"]', "data-count")
    return int(count or 0)


def test_job_page_shows_live_charts_samples_and_pauses_and_resumes(server, page, tmp_path):
    train, valid = write_rl_files(tmp_path)
    body = {"model": "tiny", "training_file": upload(server, train), "validation_file": upload(server, valid), "seed": 3,
            "method": reinforcement_method(eval_interval=5), "rftkit": rftkit_block(400)}
    job = api(server, "POST", "/v1/fine_tuning/jobs", json=body)
    page.click(f'tr[data-job="{job["id"]}"]')
    page.wait_for_selector('[data-chart="reward"] polyline[data-series="train"]')
    first = reward_points(page)
    page.wait_for_function(f"""() => Number(document.querySelector('[data-chart="reward"] polyline[data-series="train"]')
                                    .getAttribute('data-count')) > {first}""")  # the chart updates by itself
    page.wait_for_selector("#samples .sample")
    assert page.locator("#samples .sample").count() >= 4
    assert "baseline" in page.inner_text("#eval-table")
    page.wait_for_selector("#events-body tr")

    page.click("#pause")
    page.wait_for_selector('#job-head [data-status="paused"]')
    assert page.is_enabled("#resume") and not page.is_enabled("#pause")
    assert page.locator("#checkpoints-body tr").count() >= 1
    paused_at = reward_points(page)
    page.click("#resume")
    page.wait_for_selector('#job-head [data-status="running"]')
    page.wait_for_function(f"""() => Number(document.querySelector('[data-chart="reward"] polyline[data-series="train"]')
                                    .getAttribute('data-count')) > {paused_at}""")
    page.click("#cancel")
    page.wait_for_selector('#job-head [data-status="cancelled"]')


def test_new_job_page_uploads_tests_the_grader_and_launches(server, page, tmp_path):
    train, valid = write_rl_files(tmp_path)
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"messages": [{"role": "user", "content": "ok"}]}, "{oops"])
    page.click("text=New job")
    page.set_input_files("#train-file", str(broken))
    page.wait_for_selector("#train-file-result.error-box")
    assert "broken.jsonl:2:" in page.inner_text("#train-file-result")
    page.set_input_files("#train-file", str(train))
    page.wait_for_selector("#train-file-result.ok-box")
    assert "8 reinforcement rows" in page.inner_text("#train-file-result")
    page.set_input_files("#valid-file", str(valid))
    page.wait_for_selector("#valid-file-result.ok-box")
    assert json.loads(page.input_value("#grader-item"))["messages"][0]["content"].startswith("say something")

    page.fill("#grader", json.dumps({**GRADER, "input": "{{ sample.text }}"}))
    page.click("#grader-test")
    page.wait_for_selector("#grader-result.error-box")
    assert "sample has output_text" in page.inner_text("#grader-result")
    page.fill("#grader", json.dumps(GRADER))
    page.fill("#grader-sample", "a cat")
    page.click("#grader-test")
    page.wait_for_selector("#grader-result.ok-box")
    assert page.inner_text("#grader-result").startswith("reward 1")

    page.select_option("#model", "tiny")
    page.fill("#batch-size", "4")
    page.fill("#seed", "3")
    page.fill("#rftkit-block", json.dumps(rftkit_block(3)))
    page.click("#launch")
    page.wait_for_url(re.compile(r".*#/jobs/ftjob-"))
    page.wait_for_selector('#job-head [data-status="succeeded"]')
    assert "final" in page.inner_text("#eval-table")
    assert page.locator('[data-chart="reward"] polyline[data-series="train"]').get_attribute("data-count") == "3"


def test_compare_view_overlays_jobs_curves_and_lays_their_settings_side_by_side(server, page, tmp_path):
    train, valid = write_rl_files(tmp_path)
    files = {"training_file": upload(server, train), "validation_file": upload(server, valid)}
    jobs = [api(server, "POST", "/v1/fine_tuning/jobs", json={
        "model": "tiny", **files, "seed": 3, "suffix": f"g{group}", "method": reinforcement_method(eval_interval=1),
        "rftkit": rftkit_block(2, group_size=group, kl={"coef": 0.01})})["id"] for group in (4, 2)]
    wait_for(lambda: all(api(server, "GET", f"/v1/fine_tuning/jobs/{j}")["status"] == "succeeded" for j in jobs),
             timeout=600, every=1, what="both jobs to succeed")

    page.goto(f"{server.url}/#/")
    page.check(f'[data-pick="{jobs[0]}"]')
    assert page.url.endswith("#/") and not page.is_enabled("#compare")  # ticking is not opening the job
    page.check(f'[data-pick="{jobs[1]}"]')
    page.click("#compare")
    page.wait_for_url(re.compile(r".*#/compare\?ids=ftjob-"))
    assert set(page.url.split("ids=")[1].split(",")) == set(jobs)

    for job in jobs:
        for chart in ("train_reward", "valid_reward", "kl", "length", "time"):
            line = page.wait_for_selector(f'[data-chart="{chart}"] polyline[data-key="{job}"]', state="attached")
            assert line.get_attribute("data-count") == "2", chart
        assert page.locator(f'#compare-legend [data-key="{job}"]').count() == 1
    colors = {page.get_attribute(f'[data-chart="train_reward"] polyline[data-key="{j}"]', "stroke") for j in jobs}
    assert len(colors) == 2

    group_row = page.locator('#compare-settings tr[data-setting="group size"]')
    assert group_row.get_attribute("class") == "differs"
    assert group_row.locator("td").all_inner_texts() == ["4", "2"]
    for same in ("model", "algorithm", "grader", "learning rate", "kl coef"):
        assert page.locator(f'#compare-settings tr[data-setting="{same}"]').get_attribute("class") is None, same
    assert page.locator('#compare-settings tr[data-setting="grader"] td').first.inner_text() == "has a (string_check)"
    finals = page.locator('#compare-settings tr[data-setting="final valid reward"] td').all_inner_texts()
    assert len(finals) == 2 and all(f != "—" for f in finals)


TALKER_ENV = '''
from rftkit.rollout.env import Env, StepResult


class Talker(Env):
    """Answers each of the model's turns with a tool message, for three turns; every episode earns 1."""

    def __init__(self):
        self.turns = 0

    def step(self, turn):
        self.turns += 1
        return StepResult([{"role": "tool", "tool_call_id": "t", "content": f"result {self.turns}"}])

    def reward(self):
        return float(self.turns)
'''


@pytest.fixture(scope="module")
def episode_server(tmp_path_factory):
    """A server with a registered environment, and a tiny model that ends its turns by itself."""
    from rftkit.models.load import save_policy
    from rftkit.models.tiny import build_tiny
    from rftkit.train.sft import SFTSettings, run_sft
    from rftkit.types import Example

    root = tmp_path_factory.mktemp("episodes")
    model, tokenizer = build_tiny("tiny", seed=4)
    rows = [Example([{"role": "user", "content": q}, {"role": "assistant", "content": "ok"}], {})
            for q in ("say something with an a", "result 1", "result 2")]
    run_sft(model, tokenizer, rows, [], SFTSettings(total_steps=40, batch_size=3, learning_rate=3e-3))
    save_policy(model, tokenizer, root / "data" / "models" / "talker")
    (root / "envs").mkdir()
    (root / "envs" / "talker.py").write_text(TALKER_ENV)
    server = Server(root / "data", env={"RFTKIT_API_KEY": KEY}, args=("--environment-dir", str(root / "envs"))).start()
    yield server
    server.stop()


def test_the_sample_viewer_shows_an_episode_turn_by_turn(episode_server, tmp_path):
    train, valid = write_rl_files(tmp_path)
    method = reinforcement_method(eval_interval=1)
    del method["reinforcement"]["grader"]  # the environment's reward() is the reward
    body = {"model": "talker", "training_file": upload(episode_server, train),
            "validation_file": upload(episode_server, valid), "method": method,
            "rftkit": rftkit_block(2, environment={"factory": "talker.py:Talker", "max_turns": 3})}
    job = api(episode_server, "POST", "/v1/fine_tuning/jobs", json=body)
    wait_for(lambda: api(episode_server, "GET", f"/v1/fine_tuning/jobs/{job['id']}")["status"] == "succeeded",
             what="the episode job to finish")
    with dashboard_page(episode_server.url, KEY) as page:
        page.click(f'tr[data-job="{job["id"]}"]')
        page.wait_for_selector("#samples .sample .episode")
        episode = page.locator("#samples .sample .episode").first
        roles = [r.strip() for r in episode.locator(".turn > span.muted").all_inner_texts()]
        assert roles[:5] == ["assistant", "tool", "assistant", "tool", "assistant"]
        assert "result 1" in episode.locator(".turn.tool").first.inner_text()
        assert "stopped: max_turns" in episode.locator(".turn.stop").inner_text()
