"""string_check's four operations and the template language, with values worked out by hand."""

import math

import pytest

from rftkit.graders import build_grader
from rftkit.graders.base import ERROR_KINDS
from rftkit.types import Sample


def check(operation: str, reference: str = "{{ item.answer }}"):
    return build_grader({"type": "string_check", "name": "c", "input": "{{ sample.output_text }}",
                         "reference": reference, "operation": operation})


@pytest.mark.parametrize("operation, output, answer, reward", [
    ("eq", "Paris", "Paris", 1.0), ("eq", "paris", "Paris", 0.0),
    ("ne", "Paris", "Paris", 0.0), ("ne", "Lyon", "Paris", 1.0),
    ("like", "It is Paris.", "Paris", 1.0), ("like", "It is paris.", "Paris", 0.0),
    ("ilike", "It is PARIS.", "paris", 1.0), ("ilike", "It is Lyon.", "paris", 0.0),
])
def test_each_operation(operation, output, answer, reward):
    assert check(operation).grade(Sample(output), {"answer": answer}).reward == reward


def test_nested_item_fields_lists_and_numbers_render():
    grader = check("eq", "{{ item.meta.answers.1 }}-{{ item.meta.n }}")
    assert grader.grade(Sample("b-3"), {"meta": {"answers": ["a", "b"], "n": 3}}).reward == 1.0


def test_output_json_and_output_tools_are_reachable():
    grader = check("eq", "{{ sample.output_json.city.name }}")
    assert grader.grade(Sample('{"city": {"name": "Oslo"}}'), {}).reward == 0.0  # the whole text != "Oslo"
    by_json = build_grader({"type": "string_check", "name": "j", "input": "{{ sample.output_json.city.name }}",
                            "reference": "Oslo", "operation": "eq"})
    assert by_json.grade(Sample('{"city": {"name": "Oslo"}}'), {}).reward == 1.0
    tools = build_grader({"type": "string_check", "name": "t", "input": "{{ sample.output_tools.0.function.name }}",
                          "reference": "lookup", "operation": "eq"})
    sample = Sample("", output_tools=[{"type": "function", "function": {"name": "lookup", "arguments": "{}"}}])
    assert tools.grade(sample, {}).reward == 1.0


def test_missing_variable_is_invalid_variable_error_not_a_crash():
    grade = check("eq").grade(Sample("x"), {"other": 1})
    assert grade.reward == 0.0
    assert grade.metadata["errors"]["invalid_variable_error"] is True
    assert "item has no 'answer'" in grade.metadata["errors"]["invalid_variable_error_details"]


def test_output_json_of_non_json_is_sample_parse_error():
    grader = check("eq", "{{ sample.output_json.a }}")
    grade = grader.grade(Sample("not json"), {})
    assert grade.metadata["errors"]["sample_parse_error"] is True and grade.reward == 0.0


def test_metadata_has_openai_graders_run_shape():
    grade = check("eq").grade(Sample("a"), {"answer": "a"})
    assert set(grade.metadata) >= {"name", "type", "errors", "execution_time", "scores", "token_usage",
                                   "sampled_model_name"}
    assert set(ERROR_KINDS) <= set(grade.metadata["errors"])
    assert grade.metadata["type"] == "string_check" and grade.metadata["execution_time"] >= 0
    assert not any(grade.metadata["errors"].values()) and math.isfinite(grade.reward)
