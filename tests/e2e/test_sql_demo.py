"""`rftkit demo --task sql` end to end, with fewer steps than its defaults: the tiny model is
warm-started, reinforced against execution accuracy, and held-out pass@1 (exact result sets)
rises; the output has the demo's four stages and its result line."""

import json
import re

import pytest

from helpers import run_cli


@pytest.mark.slow
def test_the_sql_demo_raises_held_out_execution_accuracy(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--task", "sql", "--out", str(out), "--rl-steps", "40", cwd=tmp_path, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = result.stderr + result.stdout  # the demo's stages and result go to stderr (rftkit.cli.common.out)
    for stage in ("1. data", "2. model", "3. warm start", "4. reinforcement", "held-out evaluation"):
        assert stage in text, text[-3000:]
    assert re.search(r"result: held-out pass@1 [\d.]+% -> [\d.]+% \([+-][\d.]+ points\)", text), text[-2000:]
    job = json.loads((out / "job.yaml").read_text())
    grader = job["method"]["reinforcement"]["grader"]
    assert grader["type"] == "sql_execution" and grader["partial_credit"] is True
    summary = json.loads((out / "rft" / "summary.json").read_text())
    before, after = summary["baseline"]["pass_at_1"], summary["final"]["pass_at_1"]
    assert after > before, (before, after)


def test_an_unknown_demo_task_is_a_one_line_error(tmp_path):
    result = run_cli("demo", "--task", "nope", "--out", str(tmp_path / "demo"), cwd=tmp_path)
    assert result.returncode == 2
    assert "--task nope: no such demo task" in result.stderr + result.stdout and "addition, sql" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr and not (tmp_path / "demo").exists()
