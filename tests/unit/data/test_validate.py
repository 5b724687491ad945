"""Each validation error names its line, field and fix; warnings do not block."""

import pytest

from helpers import assistant, user, write_jsonl
from rftkit.data.validate import check_dataset, load_examples
from rftkit.errors import RftkitError


def only_problem(path, purpose="reinforcement", **kwargs):
    checked = check_dataset(path, purpose, **kwargs)
    assert len(checked.problems) == 1, [str(p) for p in checked.problems]
    return checked.problems[0]


GOOD = {"messages": [user("1+1=")], "answer": "2"}


@pytest.mark.parametrize(
    "bad_row, field, message, purpose",
    [
        ("{not json", None, "invalid JSON", "reinforcement"),
        ("[1, 2]", None, "must be a JSON object", "reinforcement"),
        ({"answer": "2"}, "messages", "missing", "reinforcement"),
        ({"messages": []}, "messages", "non-empty list", "reinforcement"),
        ({"messages": "hi"}, "messages", "non-empty list", "reinforcement"),
        ({"messages": ["hi"]}, "messages[0]", "must be an object", "reinforcement"),
        ({"messages": [{"role": "human", "content": "x"}]}, "messages[0].role", "unknown role 'human'", "reinforcement"),
        ({"messages": [{"content": "x"}]}, "messages[0].role", "unknown role missing", "reinforcement"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content", "must be text", "reinforcement"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "must be text, got missing", "reinforcement"),
        ({"messages": [user("a"), assistant("b")]}, "messages[1].role", "reinforcement prompts end with the user", "reinforcement"),
        ({"messages": [user("a")]}, "messages[0].role", "supervised rows end with the target", "supervised"),
        ({"messages": [user("a"), assistant("  ")]}, "messages[1].content", "target assistant turn is empty", "supervised"),
        ({"messages": [user("a")], "tools": [{"name": "f"}]}, "tools", "malformed tools", "reinforcement"),
        ({"messages": [user("a"), {"role": "assistant", "tool_calls": [{"x": 1}]}, user("b")]},
         "messages[1].tool_calls", "malformed tool calls", "reinforcement"),
    ],
)
def test_each_error_names_line_field_and_fix(tmp_path, bad_row, field, message, purpose):
    good = GOOD if purpose == "reinforcement" else {"messages": [user("1+1="), assistant("2")]}
    path = write_jsonl(tmp_path / "d.jsonl", [good, good | {"answer": "3"}, bad_row])
    problem = only_problem(path, purpose)
    assert problem.severity == "error"
    assert problem.line == 3
    assert problem.field == field
    assert message in problem.message
    assert problem.fix
    assert str(problem).startswith(f"{path}:3: ")


def test_rows_missing_a_field_the_grader_reads(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, {"messages": [user("x")], "meta": {"other": 1}}])
    checked = check_dataset(path, "reinforcement", required_fields={"answer", "meta.gold"})
    assert [(p.line, p.field) for p in checked.problems] == [(1, "meta.gold"), (2, "answer"), (2, "meta.gold")]
    assert "{{ item.meta.gold }}" in checked.problems[0].message


def test_prompt_longer_than_the_limit(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, {"messages": [user("x" * 50)], "answer": "1"}])
    problem = only_problem(path, count_prompt_tokens=lambda e: len(e.messages[-1]["content"]), max_prompt_tokens=10)
    assert (problem.line, problem.severity) == (2, "error")
    assert "50 tokens, over the limit of 10" in problem.message


def test_duplicates_and_overlap_are_warnings(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [GOOD, {"messages": [user("2+2=")], "answer": "4"}, GOOD])
    valid = write_jsonl(tmp_path / "valid.jsonl", [{"messages": [user("2+2=")], "answer": "4"}])
    other = check_dataset(train, "reinforcement")
    assert [(p.severity, p.line, p.message) for p in other.problems] == [("warning", 3, "duplicate of line 1")]
    assert len(other.examples) == 3  # warnings drop nothing
    checked = check_dataset(valid, "reinforcement", compare_with=other)
    (problem,) = checked.problems
    assert problem.severity == "warning" and problem.line == 1
    assert f"{train}:2" in problem.message


def test_blank_lines_are_skipped_but_line_numbers_stay_true(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, "", "{broken"])
    problem = only_problem(path)
    assert problem.line == 3


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    assert "no rows" in only_problem(path).message


def test_content_parts_and_extra_fields_are_kept(tmp_path):
    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
           "answer": "x", "meta": {"k": [1, 2]}}
    (example,) = load_examples(write_jsonl(tmp_path / "d.jsonl", [row]), "reinforcement")
    assert example.messages == [user("ab")]
    assert example.item["meta"] == {"k": [1, 2]} and example.item["answer"] == "x"
    assert example.line == 1


def test_load_examples_raises_one_error_listing_every_problem(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, "{bad", {"messages": []}])
    with pytest.raises(RftkitError) as err:
        load_examples(path, "reinforcement")
    text = str(err.value)
    assert "2 problem(s) in 3 rows" in text and f"{path}:2" in text and f"{path}:3" in text
    assert "rftkit data validate" in text


def test_supervised_example_splits_prompt_and_target(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "system", "content": "s"}, user("q"), assistant("a")]}])
    (example,) = load_examples(path, "supervised")
    assert example.prompt_messages == [{"role": "system", "content": "s"}, user("q")]
    assert example.target == "a"


def tool_call(call_id="c1", name="mul", arguments='{"a": 1}'):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


TOOLS = [{"type": "function", "function": {"name": "mul", "parameters": {"type": "object", "properties": {}}}}]


@pytest.mark.parametrize("messages,tools,field,message", [
    ([user("x"), {"role": "assistant", "tool_calls": [tool_call()]}, {"role": "tool", "tool_call_id": "c2",
      "content": "1"}, assistant("1")], TOOLS, "messages[2].tool_call_id", "answers no tool call"),
    ([user("x"), {"role": "assistant", "tool_calls": [tool_call()]}, assistant("1")], TOOLS,
     "messages[1].tool_calls[0]", "has no tool message"),
    ([user("x"), {"role": "assistant", "tool_calls": [tool_call(arguments="{oops")]},
      {"role": "tool", "tool_call_id": "c1", "content": "1"}, assistant("1")], TOOLS,
     "messages[1].tool_calls[0].function.arguments", "not a JSON object"),
    ([user("x"), {"role": "assistant", "tool_calls": [tool_call(name="add")]},
      {"role": "tool", "tool_call_id": "c1", "content": "1"}, assistant("1")], TOOLS,
     "messages[1].tool_calls[0].function.name", "do not declare"),
    ([user("x"), assistant("1")], [{"type": "function", "function": {"name": "mul", "parameters": {"type": "array"}}}],
     "tools[0].function.parameters", "not a JSON schema of an object"),
    ([user("x"), assistant("1")], [{"type": "function", "function": {"name": "two words"}}],
     "tools[0].function.name", "not a valid tool name"),
])
def test_tool_transcripts_are_checked(tmp_path, messages, tools, field, message):
    path = write_jsonl(tmp_path / "t.jsonl", [{"messages": messages, "tools": tools}])
    problems = check_dataset(path, "supervised").problems  # a wrong id also leaves its call unanswered
    problem = next(p for p in problems if p.field == field)
    assert problem.line == 1 and problem.severity == "error" and message in problem.message and problem.fix


def test_a_well_formed_transcript_passes(tmp_path):
    rows = [{"messages": [user("x"), {"role": "assistant", "tool_calls": [tool_call()]},
                          {"role": "tool", "tool_call_id": "c1", "content": "1"}, assistant("1")], "tools": TOOLS}]
    assert check_dataset(write_jsonl(tmp_path / "t.jsonl", rows), "supervised").problems == []
