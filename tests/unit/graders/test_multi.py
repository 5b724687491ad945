"""multi: formulas worked out by hand, precedence, parse errors, and sub-grader errors."""

import math

import pytest

from rftkit.graders import build_grader
from rftkit.graders.formula import FormulaError, evaluate, parse
from rftkit.types import Sample


@pytest.mark.parametrize("formula, value", [
    ("a + b * c", 1 + 2 * 4),
    ("(a + b) * c", (1 + 2) * 4),
    ("c / b - a", 4 / 2 - 1),
    ("b ^ c ^ 0.5", 2 ** (4 ** 0.5)),  # right-associative
    ("-b ^ 2", -4),                    # ^ binds tighter than unary minus
    ("min(a, b, c) + max(a, c)", 1 + 4),
    ("abs(a - c) + floor(2.7) + ceil(2.1)", 3 + 2 + 3),
    ("exp(0) + sqrt(c) + log(1)", 1 + 2 + 0),
    ("0.25 * a + .75 * b + 1e-1", 0.25 + 1.5 + 0.1),
])
def test_formulas_by_hand(formula, value):
    assert math.isclose(evaluate(parse(formula, {"a", "b", "c"}), {"a": 1.0, "b": 2.0, "c": 4.0}), value)


@pytest.mark.parametrize("formula, message", [
    ("a +", "ends early"), ("a * (b", "expected '\\)'"), ("a b", "unexpected 'b'"), ("a % b", "unexpected '%'"),
    ("d + a", "'d' at position 1 is not a grader key"), ("sqrt(a, b)", "takes 1 argument"), ("", "empty"),
    ("__import__('os')", "unexpected"), ("a.b", "unexpected '.'"),
])
def test_parse_errors_say_where(formula, message):
    with pytest.raises(FormulaError, match=message):
        parse(formula, {"a", "b"})


def exact(reference):
    return {"type": "string_check", "name": reference, "input": "{{ sample.output_text }}",
            "reference": reference, "operation": "ilike"}


def multi(formula, **graders):
    return build_grader({"type": "multi", "name": "mix", "calculate_output": formula, "graders": graders})


def test_multi_combines_sub_rewards_by_the_formula():
    grader = multi("0.75 * cat + 0.25 * dog", cat=exact("cat"), dog=exact("dog"))
    grade = grader.grade(Sample("a cat"), {})
    assert grade.reward == 0.75 and grade.sub_rewards == {"cat": 1.0, "dog": 0.0}
    batch = grader.grade_many([Sample("dog"), Sample("cat dog"), Sample("none")], [{}, {}, {}])
    assert [g.reward for g in batch] == [0.25, 1.0, 0.0]


def test_formula_that_does_not_parse_is_formula_parse_error_per_sample():
    grader = multi("cat +* 2", cat=exact("cat"))
    grade = grader.grade(Sample("cat"), {})
    assert grade.reward == 0.0 and grade.metadata["errors"]["formula_parse_error"] is True
    assert grader.problems() == ["calculate_output: unexpected '*' at position 6"]


def test_division_by_zero_and_domain_errors_score_zero_with_other_error():
    grade = multi("1 / dog", dog=exact("dog")).grade(Sample("cat"), {})
    assert grade.reward == 0.0 and "division" in grade.metadata["errors"]["other_error_details"]
    grade = multi("log(dog)", dog=exact("dog")).grade(Sample("cat"), {})
    assert grade.reward == 0.0 and grade.metadata["errors"]["other_error"] is True


def test_sub_grader_error_is_reported_and_its_key_scores_zero():
    broken = {"type": "string_check", "name": "b", "input": "{{ item.missing }}", "reference": "x", "operation": "eq"}
    grade = multi("cat + broken", cat=exact("cat"), broken=broken).grade(Sample("cat"), {})
    assert grade.reward == 1.0 and grade.sub_rewards == {"cat": 1.0, "broken": 0.0}
    assert grade.metadata["errors"]["invalid_variable_error"] is True
    assert grade.metadata["errors"]["invalid_variable_error_details"].startswith("broken: ")
