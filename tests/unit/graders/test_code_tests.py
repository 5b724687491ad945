"""code_tests: the sample's code against stdin/stdout and assertion test cases, in the sandbox."""

import pytest

from rftkit.errors import RftkitError
from rftkit.graders import build_grader
from rftkit.types import Sample

ADD_TESTS = [{"stdin": "1 2\n", "expected_stdout": "3\n"}, {"stdin": "10 -4\n", "expected_stdout": "6"},
             {"assert": "assert add(2, 2) == 4"}, {"assert": "assert add(-1, 1) == 0"}]


@pytest.fixture
def grader(sandbox_context):
    with build_grader({"type": "code_tests", "name": "add", "tests": "{{ item.tests }}", "time_limit_seconds": 1},
                      sandbox_context) as made:
        yield made


def program(body: str) -> str:
    return f"Here you go:\n```python\n{body}\n```\n"


CORRECT = "def add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    print(add(*map(int, input().split())))"


def test_fraction_passed(grader):
    wrong_sign = CORRECT.replace("a + b", "a - b")  # -1, 14, 0, -2: passes none
    off_for_negatives = CORRECT.replace("return a + b", "return abs(a) + b")  # 3, 6, 4, then 2 != 0
    grades = grader.grade_many([Sample(program(c)) for c in (CORRECT, wrong_sign, off_for_negatives)],
                               [{"tests": ADD_TESTS}] * 3)
    assert [g.reward for g in grades] == [1.0, 0.0, 0.75]
    assert grades[2].metadata["scores"]["results"] == ["passed", "passed", "passed", "failed: error or wrong exit status"]


def test_runaway_and_crashing_code_fail_their_tests_only(grader):
    looping = CORRECT.replace("print(add", "while True: pass\n    print(add")  # the program tests loop
    grade = grader.grade(Sample(program(looping)), {"tests": ADD_TESTS})
    assert grade.reward == 0.5
    assert grade.metadata["scores"]["results"][0].startswith("failed: time limit")  # wall or CPU, whichever first
    syntax = grader.grade(Sample(program("def add(a, b) return a")), {"tests": ADD_TESTS})
    assert syntax.reward == 0.0 and "does not compile" in syntax.metadata["scores"]["results"][0]


def test_exiting_early_passes_no_assertion(grader):
    cheat = "import os, sys\ndef add(a, b):\n    return 0\nsys.exit(0)"
    grade = grader.grade(Sample(program(cheat)), {"tests": [{"assert": "assert add(2, 2) == 4"}]})
    assert grade.reward == 0.0
    os_exit = "import os\nos._exit(0)"
    assert grader.grade(Sample(program(os_exit)), {"tests": [{"assert": "assert False"}]}).reward == 0.0


def test_tests_given_as_json_text_and_bad_tests(grader):
    import json

    assert grader.grade(Sample(program(CORRECT)), {"tests": json.dumps(ADD_TESTS[:1])}).reward == 1.0
    grade = grader.grade(Sample(program(CORRECT)), {"tests": [{"stdin": "1"}]})
    assert grade.metadata["errors"]["invalid_variable_error"] is True
    assert grader.grade(Sample("x"), {}).metadata["errors"]["invalid_variable_error"] is True


def test_spec_checks():
    with pytest.raises(RftkitError, match="tests"):
        build_grader({"type": "code_tests", "tests": "item.tests"})
    with pytest.raises(RftkitError, match="either"):
        build_grader({"type": "code_tests", "tests": [{"stdin": "x"}]})
