"""`rftkit grade` and `rftkit graders validate` as a user runs them."""

import json

from helpers import run_cli


def write(path, value):
    path.write_text(json.dumps(value))
    return path


def test_grade_prints_the_graders_run_shape(tmp_path):
    grader = write(tmp_path / "g.json", {
        "type": "multi", "name": "mix", "calculate_output": "0.5 * exact + 0.5 * close",
        "graders": {"exact": {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
                              "reference": "{{ item.answer }}", "operation": "eq"},
                    "close": {"type": "text_similarity", "name": "close", "input": "{{ sample.output_text }}",
                              "reference": "{{ item.answer }}", "evaluation_metric": "rouge_1"}}})
    item = write(tmp_path / "item.json", {"answer": "the capital is Paris"})
    result = run_cli("grade", "--grader", grader, "--sample", "the capital is Lyon", "--item", item)
    assert result.returncode == 0, result.stderr
    graded = json.loads(result.stdout)
    assert graded["reward"] == 0.5 * 0.0 + 0.5 * 0.75  # rouge_1: 3 of 4 words on each side
    assert graded["sub_rewards"] == {"exact": 0.0, "close": 0.75}
    assert graded["metadata"]["type"] == "multi" and graded["metadata"]["errors"]["other_error"] is False

    (tmp_path / "out.txt").write_text("the capital is Paris")
    result = run_cli("grade", "--grader", grader, "--sample-file", tmp_path / "out.txt", "--item", item)
    assert json.loads(result.stdout)["reward"] == 1.0


def test_validate_ok_and_errors(tmp_path):
    good = write(tmp_path / "good.json", {"type": "python", "name": "p", "source": "def grade(s, i):\n    return 1"})
    result = run_cli("graders", "validate", good)
    assert result.returncode == 0 and "ok" in result.stderr and "p (python)" in result.stderr
    bad = write(tmp_path / "bad.json", {"type": "multi", "name": "m", "calculate_output": "a +",
                                        "graders": {"a": {"type": "python", "source": "x = 1"}}})
    result = run_cli("graders", "validate", bad)
    assert result.returncode == 2
    assert "calculate_output: the formula ends early" in result.stderr
    assert "graders.a: source: defines no top-level function grade" in result.stderr


def test_bad_input_exits_2_with_one_line(tmp_path):
    grader = write(tmp_path / "g.json", {"type": "string_check", "input": "", "reference": "", "operation": "nope"})
    result = run_cli("grade", "--grader", grader, "--sample", "x")
    assert result.returncode == 2 and "operation" in result.stderr and "Traceback" not in result.stderr
    ok = write(tmp_path / "ok.json", {"type": "string_check", "input": "", "reference": "", "operation": "eq"})
    result = run_cli("grade", "--grader", ok)
    assert result.returncode == 2 and "--sample TEXT or --sample-file FILE" in result.stderr
