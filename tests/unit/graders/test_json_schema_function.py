"""json_schema (whole and partial credit) and function (a trusted in-process callable)."""

import pytest

from rftkit.errors import RftkitError
from rftkit.graders import GraderContext, build_grader
from rftkit.types import Sample

SCHEMA = {"type": "object", "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                         "email": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}}


def schema_grader(**extra):
    return build_grader({"type": "json_schema", "name": "person", "schema": SCHEMA, **extra})


@pytest.mark.parametrize("output, whole, partial", [
    ('{"name": "Ada", "age": 36}', 1.0, 1.0),
    ('```json\n{"name": "Ada", "age": 36, "tags": ["x"]}\n```', 1.0, 1.0),
    ('{"name": "Ada", "age": -1}', 0.0, 3 / 4),            # age fails; email, tags optional and absent
    ('{"name": 7, "age": -1, "tags": [1]}', 0.0, 1 / 4),    # only email (absent, optional) passes
    ('{"age": 3}', 0.0, 3 / 4),                             # name is required and missing
    ("[1, 2]", 0.0, 0.0),                                   # not an object: no fields to credit
    ("not json", 0.0, 0.0),
])
def test_whole_and_partial_credit(output, whole, partial):
    assert schema_grader().grade(Sample(output), {}).reward == whole
    assert schema_grader(partial_credit=True).grade(Sample(output), {}).reward == pytest.approx(partial)


def test_invalid_json_is_the_models_failure_not_a_grader_error():
    grade = schema_grader().grade(Sample("{oops"), {})
    assert grade.metadata["scores"]["valid_json"] is False and not any(grade.metadata["errors"].values())


def test_an_invalid_schema_is_refused():
    with pytest.raises(RftkitError, match="not a valid JSON Schema"):
        build_grader({"type": "json_schema", "schema": {"type": "nonsense"}})


def test_function_grader_from_a_file(tmp_path):
    (tmp_path / "rewards.py").write_text(
        "def short(prompt, completion, item):\n"
        "    return 1.0 if len(completion) <= item['limit'] and prompt[-1]['role'] == 'user' else 0.0\n"
        "def broken(prompt, completion, item):\n"
        "    raise ValueError('nope')\n"
        "def two(prompt, completion):\n"
        "    return 1\n")
    context = GraderContext(base_dir=tmp_path)
    grader = build_grader({"type": "function", "name": "f", "function": "rewards.py:short"}, context)
    item = {"limit": 3, "messages": [{"role": "user", "content": "hi"}]}
    assert [grader.grade(Sample(t), item).reward for t in ("abc", "abcd")] == [1.0, 0.0]
    grade = build_grader({"type": "function", "function": "rewards.py:broken"}, context).grade(Sample("x"), item)
    assert grade.metadata["errors"]["python_grader_runtime_error"] is True and "nope" in str(grade.metadata["errors"])
    with pytest.raises(RftkitError, match="must accept"):
        build_grader({"type": "function", "function": "rewards.py:two"}, context)
    with pytest.raises(RftkitError, match="no callable 'missing'"):
        build_grader({"type": "function", "function": "rewards.py:missing"}, context)


def test_function_grader_from_an_importable_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards_pkg.py").write_text("def exact(prompt, completion, item):\n    return float(completion == item['answer'])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    grader = build_grader({"type": "function", "function": "my_rewards_pkg:exact"})
    assert [grader.grade(Sample(t), {"answer": "4"}).reward for t in ("4", "5")] == [1.0, 0.0]
    with pytest.raises(RftkitError, match="importing no_such_module_xyz failed"):
        build_grader({"type": "function", "function": "no_such_module_xyz:f"})
