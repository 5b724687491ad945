"""The real `rftkit` command in fresh processes: exit codes, messages, files written."""

import hashlib
import json

import pytest

from helpers import assistant, run_cli, user, write_jsonl


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_data_validate_reports_lines_and_exits_2_without_traceback(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [user("1+1=")], "answer": "2"}, "{oops", {"messages": [{"role": "bot", "content": "x"}]}])
    result = run_cli("data", "validate", path, "--for", "reinforcement")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{path}:2: invalid JSON" in result.stderr
    assert f"{path}:3: messages[0].role: unknown role 'bot'" in result.stderr
    assert "3 rows, 1 usable, 2 errors" in result.stderr


def test_data_validate_ok_with_warnings_exits_0(tmp_path):
    row = {"messages": [user("1+1=")], "answer": "2"}
    path = write_jsonl(tmp_path / "d.jsonl", [row, row])
    result = run_cli("data", "validate", path)
    assert result.returncode == 0, result.stderr
    assert "duplicate of line 1" in result.stderr and "ok" in result.stderr


def test_data_validate_with_grader_and_model(tmp_path, tiny_dir):
    grader = tmp_path / "g.json"
    grader.write_text(json.dumps({"type": "string_check", "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}"}))
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [user("x" * 40)]}])
    result = run_cli("data", "validate", path, "--grader", grader, "--model", tiny_dir, "--max-prompt-tokens", 20)
    assert result.returncode == 2
    assert "answer: missing, but the grader reads {{ item.answer }}" in result.stderr
    assert "over the limit of 20" in result.stderr


def test_missing_file_is_one_line(tmp_path):
    result = run_cli("data", "validate", tmp_path / "nope.jsonl")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.jsonl'}: no such file or directory"


def test_model_init_is_deterministic_and_refuses_to_overwrite(tmp_path):
    first = run_cli("model", "init", "--out", tmp_path / "a", "--seed", 4)
    second = run_cli("model", "init", "--out", tmp_path / "b", "--seed", 4)
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert "1,100,160 parameters" in first.stderr
    assert digest(tmp_path / "a" / "model.safetensors") == digest(tmp_path / "b" / "model.safetensors")
    again = run_cli("model", "init", "--out", tmp_path / "a")
    assert again.returncode == 2 and "already holds files" in again.stderr


def test_model_init_with_warm_start_reports_exact_match(tmp_path):
    rows = [{"messages": [user(f"{a}+{b}="), assistant(str(a + b))]} for a in range(5) for b in range(5)]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    result = run_cli("model", "init", "--out", tmp_path / "m", "--sft-data", data, "--sft-valid", data, "--sft-steps", 5)
    assert result.returncode == 0, result.stderr
    assert "held-out exact-match:" in result.stderr and "before" in result.stderr
    assert (tmp_path / "m" / "config.json").exists()


def test_supervised_job_end_to_end(tmp_path, tiny_dir):
    rows = [{"messages": [user(f"{a}+1="), assistant(str(a + 1))]} for a in range(10)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "valid.jsonl", rows[:3])
    (tmp_path / "job.yaml").write_text(
        f"model: {tiny_dir}\ntraining_file: train.jsonl\nvalidation_file: valid.jsonl\n"
        "method:\n  type: supervised\n  supervised:\n    hyperparameters: {n_epochs: 2, batch_size: 5}\n"
        "rftkit:\n  learning_rate: 1.0e-3\n  lengths: {max_completion_tokens: 4}\n"
    )
    result = run_cli("train", tmp_path / "job.yaml", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert "10 training rows and 3 validation rows, all used" in result.stderr
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["train_rows"] == 10 and summary["exact_match_after"] is not None
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_bad_job_spec_names_every_problem(tmp_path):
    (tmp_path / "job.yaml").write_text("model: m\ntraining_file: t.jsonl\nmethod: {type: supervised}\nrftkit: {lr: 1}\n")
    result = run_cli("train", tmp_path / "job.yaml", "--out", tmp_path / "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "rftkit.lr: unknown key" in result.stderr


def test_config_explain_resolves_auto(tmp_path, tiny_dir):
    write_jsonl(tmp_path / "train.jsonl", [{"messages": [user(str(i))]} for i in range(12)])
    (tmp_path / "job.yaml").write_text(
        f"model: {tiny_dir}\ntraining_file: train.jsonl\nmethod:\n  type: reinforcement\n  reinforcement:\n"
        "    grader: {type: string_check, input: a, reference: a, operation: eq}\n"
    )
    result = run_cli("config", "explain", tmp_path / "job.yaml")
    assert result.returncode == 0, result.stderr
    assert "# resolved for 12 training rows, 0 validation rows and 1,1" in result.stdout
    assert "batch_size: 8" in result.stdout and "group_size: 8" in result.stdout
    assert "learning_rate: 3.0e-05" in result.stdout
    assert "#   learning_rate = 3e-05: 1.1M parameters: reinforcement 3e-05 x (1.1M / N)^0.45" in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["data", "validate", "--help"], ["model", "init", "--help"], ["train", "--help"], ["demo", "--help"]])
def test_every_command_has_help(args):
    result = run_cli(*args)
    assert result.returncode == 0 and "Usage" in result.stdout
