"""What every grader shares: non-finite and non-numeric rewards become 0 with the error named;
batches keep order and report per-grader means and error rates."""

import pytest

from rftkit.errors import RftkitError
from rftkit.graders import Grader, GraderContext, GraderFailure, GraderSpec, build_grader, grade_batch
from rftkit.types import Sample


class Fixed(Grader):
    spec_model = GraderSpec

    def __init__(self, value):
        super().__init__(GraderSpec(type="fixed", name="fixed"), GraderContext())
        self.value = value

    def score(self, sample, item):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


@pytest.mark.parametrize("value, shown", [(float("nan"), "nan"), (float("inf"), "inf"), (float("-inf"), "-inf"),
                                          ("0.5", "'0.5'"), (None, "None"), (True, "True")])
def test_bad_rewards_become_zero_with_other_error(value, shown):
    grade = Fixed(value).grade(Sample("x"), {})
    assert grade.reward == 0.0
    assert grade.metadata["errors"]["other_error"] is True
    assert shown in grade.metadata["errors"]["other_error_details"]


def test_grader_failure_names_its_kind_and_a_bug_is_other_error():
    failed = Fixed(GraderFailure("unresponsive_reward_error", "slow")).grade(Sample("x"), {})
    assert failed.metadata["errors"]["unresponsive_reward_error"] is True and failed.reward == 0.0
    bug = Fixed(KeyError("k")).grade(Sample("x"), {})
    assert bug.metadata["errors"]["other_error_details"] == "KeyError: 'k'"


def test_batch_keeps_order_and_reports_error_rate():
    grader = build_grader({"type": "string_check", "name": "eq", "input": "{{ sample.output_text }}",
                           "reference": "{{ item.answer }}", "operation": "eq"})
    samples = [Sample(t) for t in ["a", "b", "c", "d"]]
    items = [{"answer": "a"}, {"answer": "x"}, {}, {"answer": "d"}]
    batch = grade_batch(grader, samples, items)
    assert batch.rewards == [1.0, 0.0, 0.0, 1.0]
    assert batch.stats() == {"eq": {"mean": 0.5, "error_rate": 0.25}}
    with pytest.raises(ValueError):
        grade_batch(grader, samples, items[:2])


def test_unknown_type_and_bad_fields_name_the_path():
    with pytest.raises(RftkitError, match="unknown grader type 'nope'"):
        build_grader({"type": "nope"})
    with pytest.raises(RftkitError, match="operation"):
        build_grader({"type": "string_check", "input": "", "reference": "", "operation": "regex"})
    with pytest.raises(RftkitError, match="unknown key"):
        build_grader({"type": "string_check", "input": "", "reference": "", "operation": "eq", "extra": 1})
