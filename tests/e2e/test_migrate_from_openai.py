"""docs/migrate-from-openai.md: its OpenAI code runs, as written, against a real `rftkit serve`.

The guide's runnable block reads OPENAI_BASE_URL, OPENAI_API_KEY (as the openai client does)
and MODEL from the environment, so the test sets those three and runs the text unchanged.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import openai
import pytest

from rftkit.config import parse_job
from service_helpers import metrics_steps, serve_tiny

GUIDE = Path(__file__).parents[2] / "docs" / "migrate-from-openai.md"


def block_after(marker: str) -> str:
    """The ```python block right after the guide's HTML comment `<!-- marker ... -->`."""
    found = re.search(rf"<!-- {re.escape(marker)}[^>]*-->\s*```python\n(.*?)\n\s*```\n", GUIDE.read_text(), re.S)
    assert found, f"{GUIDE.name}: no ```python block after <!-- {marker}"
    return textwrap.dedent(found.group(1))


@pytest.fixture
def service(tmp_path, tiny_dir):
    server, key = serve_tiny(tmp_path / "data", tiny_dir)
    yield server, key
    server.stop()


@pytest.mark.timeout(300)
def test_the_guides_openai_code_runs_unchanged(service, tmp_path, monkeypatch, capsys):
    server, key = service
    code = block_after("migrate-example")
    assert "rftkit" not in code and "extra_body" not in code, "the guide's example must be plain OpenAI code"
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("MODEL", "tiny")
    run = {"__name__": "__main__"}
    exec(compile(code, str(GUIDE), "exec"), run)

    assert (run["trial"].reward, run["trial"].sub_rewards) == (1.0, {"exact": 1.0, "close": 1.0})
    job = run["job"]
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:tiny:default:capitals:{job.id}" and job.trained_tokens > 0
    total = job.rftkit["total_steps"]  # rftkit's part of the job object
    assert total == 5  # n_epochs 1 x (10 rows / batch_size 2)

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=1000))
    assert metrics_steps(events) == list(range(1, total + 1))  # each step once, across the pause
    messages = [e.message for e in events]
    assert any(m.startswith("Job paused at step") for m in messages), "the guide's pause must land while running"
    assert any(m.startswith("Resuming from checkpoint") for m in messages)
    assert {"train_reward_mean", "train_grader_capital_mean"} <= set(run["step_metrics"][-1]["scores"])

    checkpoints = run["checkpoints"]
    assert checkpoints and checkpoints[0].step_number == total
    assert all(c.fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-{c.step_number}"
               for c in checkpoints)
    for reply in (run["reply"], run["early"]):
        [choice] = reply.choices
        assert reply.usage.completion_tokens >= 1 and isinstance(choice.message.content, str)
        # text, unless the model's first token was its end (an untrained model's rare choice)
        assert choice.message.content or (choice.finish_reason, reply.usage.completion_tokens) == ("stop", 1)
    assert client.fine_tuning.jobs.retrieve(run["spare"].id).status == "cancelled"
    assert "succeeded ft:tiny:default:capitals:" in capsys.readouterr().out


def test_the_guides_rftkit_block_is_a_valid_job_spec():
    """The `rftkit` block the guide shows (sent with extra_body) names only settings that exist."""
    tree = ast.parse(block_after("migrate-rftkit-block"))
    [options] = [ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["rftkit"]]
    grader = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
              "reference": "{{ item.answer }}", "operation": "eq"}
    spec = parse_job({"model": "tiny", "training_file": "train.jsonl", "rftkit": options,
                      "method": {"type": "reinforcement", "reinforcement": {"grader": grader}}}, GUIDE.name)
    assert spec.rftkit.algorithm == options["algorithm"] and spec.rftkit.lora.enabled
