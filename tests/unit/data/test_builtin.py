"""The built-in addition task: worked answers are right, files are disjoint, the grader reads the sum."""

import json

from hypothesis import given
from hypothesis import strategies as st

from rftkit.data.builtin import ADDITION_GRADER, addition_work, final_answer, write_addition
from rftkit.data.validate import check_dataset
from rftkit.graders import build_grader
from rftkit.types import Sample


@given(st.integers(0, 99_999), st.integers(0, 99_999))
def test_worked_answer_ends_with_the_sum_and_every_column_adds_up(a, b):
    work = addition_work(a, b)
    assert final_answer(work) == str(a + b)
    carry = 0
    for column, step in enumerate(work.split(" ")[:-1]):
        left, total = step.split("=")
        terms = [int(t) for t in left.split("+")]
        assert sum(terms) == int(total)
        assert terms[0] == a // 10**column % 10 and terms[1] == b // 10**column % 10
        assert (terms[2] if column else 0) == carry
        carry = int(total) // 10


def test_files_are_valid_and_held_out_prompts_are_disjoint(tmp_path):
    files = write_addition(tmp_path, train=300, valid=50, sft=100, seed=1)
    prompts = {}
    for name, purpose in (("train", "reinforcement"), ("valid", "reinforcement"), ("sft", "supervised"), ("sft_valid", "supervised")):
        checked = check_dataset(files[name], purpose)
        assert not checked.problems, checked.problems[:3]
        prompts[name] = {json.dumps(e.prompt_messages) for e in checked.examples}
    assert prompts["valid"] == prompts["sft_valid"]
    assert not prompts["valid"] & (prompts["train"] | prompts["sft"])


def test_the_demo_grader_reads_only_the_final_answer():
    with build_grader(ADDITION_GRADER) as grader:
        item = {"answer": "85", "messages": [{"role": "user", "content": "37+48="}]}
        assert grader.grade(Sample("7+8=15 3+4+1=8 =85"), item).reward == 1.0
        assert grader.grade(Sample("wrong work =85"), item).reward == 1.0
        assert grader.grade(Sample("7+8=15 3+4+1=8 =86"), item).reward == 0.0
        assert grader.grade(Sample("=85 =86"), item).reward == 0.0  # one answer, the last
