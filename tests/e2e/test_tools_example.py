"""examples/tools end to end, as its README says to run it: a warm start on tool transcripts, then
reinforcement with the calculator environment; held-out sampled success rises by at least 12 points."""

import json
import shutil
from pathlib import Path

import pytest

from helpers import run_cli

EXAMPLE = Path(__file__).parents[2] / "examples" / "tools"


@pytest.mark.slow
def test_the_tools_example_gains_on_held_out_questions(tmp_path):
    folder = tmp_path / "examples" / "tools"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    base = tmp_path / "runs" / "tools" / "base"  # where job.yaml's `model: ../../runs/tools/base` points
    made = run_cli("model", "init", "--out", str(base), "--sft-data", str(folder / "sft.jsonl"),
                   "--sft-steps", "1500", "--sft-batch-size", "16", cwd=tmp_path, timeout=1500)
    assert made.returncode == 0, made.stderr
    out = tmp_path / "rft"
    trained = run_cli("train", str(folder / "job.yaml"), "--out", str(out), cwd=tmp_path / "examples", timeout=1800)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    before, after = summary["baseline"], summary["final"]
    assert before["pass_at_k"] > 0  # the warm start learned to copy (the baseline check would refuse otherwise)
    assert after["pass_at_1"] - before["pass_at_1"] >= 0.12, (before, after)  # measured: +24.7 points
    episodes = [json.loads(line) for line in (out / "samples.jsonl").open()]
    final = [e for e in episodes if e["split"] == "final"]
    assert final and all(e["messages"][1]["role"] == "assistant" for e in final)
    assert sum(bool(e["tool_calls"]) for e in final) / len(final) > 0.5  # it answers by calling the tool
    assert "<b>tool</b>" in (out / "report.html").read_text()  # the report shows episodes turn by turn


def test_rftkit_eval_runs_episodes(tmp_path, tiny_dir):
    """`rftkit eval --environment` samples episodes; without a grader the environment's reward()
    scores them, and a factory that cannot load is a one-line error."""
    from helpers import write_jsonl

    data = write_jsonl(tmp_path / "q.jsonl", [{"messages": [{"role": "user", "content": f"{i}*7="}]} for i in range(3)])
    envs = Path(__file__).parents[1] / "unit" / "rollout" / "envs"
    result = run_cli("eval", "--model", str(tiny_dir), "--data", str(data), "--environment",
                     f"{envs}/calculator.py:Calculator", "-k", "2", "--max-tokens", "8", "--output",
                     str(tmp_path / "figures.json"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["prompts"] == 3 and figures["reward_mean"] == 0.0  # the test calculator's reward()
    broken = run_cli("eval", "--model", str(tiny_dir), "--data", str(data), "--environment", "nowhere.py:X",
                     cwd=tmp_path)
    assert broken.returncode == 2 and "rftkit.environment.factory" in broken.stderr + broken.stdout
    assert "Traceback" not in broken.stderr
