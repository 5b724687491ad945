"""`rftkit rm`: train, eval and score through the real command; bad feedback exits 2 naming the line."""

import json

from helpers import run_cli, write_jsonl
from rm_helpers import polite_feedback


def test_rm_train_then_eval_and_score(tmp_path, tiny_dir):
    feedback = write_jsonl(tmp_path / "feedback.jsonl", polite_feedback(24))
    trained = run_cli("rm", "train", "--feedback", feedback, "--base", tiny_dir, "--out", tmp_path / "rm",
                      "--epochs", "2", "--learning-rate", "1e-3", "--device", "cpu", "--calibration", "isotonic")
    assert trained.returncode == 0, trained.stderr
    assert "held-out test split" in trained.stderr and "pairwise acc." in trained.stderr
    for name in ("reward_model.json", "heads.safetensors", "metrics.json", "report.md", "body/config.json"):
        assert (tmp_path / "rm" / name).exists(), name
    evaluated = run_cli("rm", "eval", tmp_path / "rm", "--feedback", feedback)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["heads"]["preference"]["pairs"] == 24
    scored = run_cli("rm", "score", tmp_path / "rm", "--prompt", "1+1=", "--answer", "2 thank you", "--answer", "2 damn")
    rows = [json.loads(line) for line in scored.stdout.splitlines()]
    assert [r["answer"] for r in rows] == ["2 thank you", "2 damn"] and set(rows[0]) == {"answer", "preference", "tone", "safe"}


def test_bad_feedback_exits_2_naming_the_line(tmp_path, tiny_dir):
    lines = polite_feedback(3)
    lines[1]["ratings"][0]["tone"] = 7
    feedback = write_jsonl(tmp_path / "feedback.jsonl", lines)
    result = run_cli("rm", "train", "--feedback", feedback, "--base", tiny_dir, "--out", tmp_path / "rm")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{feedback}:2: ratings[0].tone: 7 is out of range 1-5" in result.stderr
    neither = run_cli("rm", "train", "--base", tiny_dir, "--out", tmp_path / "rm")
    assert neither.returncode == 2 and "--feedback FILE or --from-db URL" in neither.stderr


def test_train_from_an_empty_store_says_what_to_do(tmp_path, tiny_dir):
    from rftkit.feedback import FeedbackStore

    FeedbackStore(tmp_path / "f.db")
    result = run_cli("rm", "train", "--from-db", f"sqlite:///{tmp_path / 'f.db'}", "--base", tiny_dir,
                     "--out", tmp_path / "rm")
    assert result.returncode == 2 and "no final judgements in the store" in result.stderr
