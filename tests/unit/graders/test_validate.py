"""validate_grader: schema, formula, template variables, python source — nothing run."""

import pytest

from rftkit.errors import RftkitError
from rftkit.graders import GraderContext
from rftkit.graders.validate import validate_grader

PY_OK = "def grade(sample, item):\n    return 1.0\n"


def test_a_good_multi_grader_has_no_problems():
    spec = {"type": "multi", "name": "m", "calculate_output": "0.5 * a + 0.5 * b", "graders": {
        "a": {"type": "string_check", "name": "a", "input": "{{ sample.output_json.x }}", "reference": "{{ item.y.z }}",
              "operation": "eq"},
        "b": {"type": "python", "name": "b", "source": PY_OK}}}
    assert validate_grader(spec) == []


@pytest.mark.parametrize("spec, problem", [
    ({"type": "python", "source": "def grade(sample, item)\n    return 1"}, "g: source: line 1: expected ':'"),
    ({"type": "python", "source": "def score(sample, item):\n    return 1"}, "defines no top-level function grade"),
    ({"type": "string_check", "input": "{{ sample.text }}", "reference": "x", "operation": "eq"},
     "g: input: {{ sample.text }}: sample has output_text"),
    ({"type": "string_check", "input": "{{ answer }}", "reference": "x", "operation": "eq"},
     "variables start with sample. or item."),
    ({"type": "multi", "calculate_output": "a ** 2", "graders": {
        "a": {"type": "string_check", "input": "", "reference": "", "operation": "eq"}}}, "calculate_output: unexpected '*'"),
    ({"type": "multi", "calculate_output": "a + c", "graders": {
        "a": {"type": "string_check", "input": "", "reference": "", "operation": "eq"}}}, "'c' at position 5 is not a grader key"),
    ({"type": "sql_execution", "database": "missing.sqlite"}, "database: "),
])
def test_each_problem_is_named(spec, problem, tmp_path):
    found = validate_grader(spec, GraderContext(base_dir=tmp_path), source="g")
    assert any(problem in p for p in found), found


def test_python_source_is_never_run():
    marker = "/tmp/rftkit-validate-must-not-run"
    source = f"open({marker!r}, 'w').write('ran')\n" + PY_OK
    assert validate_grader({"type": "python", "source": source}) == []
    import os

    assert not os.path.exists(marker)


def test_schema_errors_raise_with_the_path():
    with pytest.raises(RftkitError, match="g: source: String should have at most 262144 characters"):
        validate_grader({"type": "python", "source": "#" * (256 * 1024 + 1)}, source="g")
    with pytest.raises(RftkitError, match="range"):
        validate_grader({"type": "score_model", "model": "m", "input": [], "range": [1, 0]}, source="g")
