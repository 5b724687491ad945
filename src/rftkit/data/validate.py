"""Dataset validation: every problem, with its line, field and fix, before compute is spent.

`check_dataset` reads a file and returns the examples it could parse plus a list of
`Problem`s. Errors make a row unusable; warnings (duplicates, train/valid overlap) do not.
`load_examples` is what training calls: it raises one `RftkitError` listing the errors, and
otherwise returns every row — nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from rftkit.data.rows import RawRow, read_rows
from rftkit.errors import RftkitError, where
from rftkit.types import ROLES, Example

Purpose = Literal["reinforcement", "supervised"]


@dataclass(frozen=True)
class Problem:
    severity: Literal["error", "warning"]
    source: str
    line: int | None
    field: str | None
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{where(self.source, self.line, self.field)}: {self.message}"
        return f"{text} — {self.fix}" if self.fix else text


@dataclass
class CheckedDataset:
    source: str
    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rows: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


class _RowProblems:
    """Collects the problems of one row."""

    def __init__(self, source: str, line: int):
        self.source, self.line, self.found = source, line, []

    def error(self, field: str | None, message: str, fix: str = "") -> None:
        self.found.append(Problem("error", self.source, self.line, field, message, fix))


def _text_of(content: Any) -> str | None:
    """A message's text: a string, or OpenAI's list of {"type": "text", "text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        return "".join(p["text"] for p in content)
    return None


def _check_message(msg: Any, at: str, report: _RowProblems) -> dict | None:
    if not isinstance(msg, dict):
        report.error(at, f"must be an object, got {type(msg).__name__}", 'write {"role": ..., "content": ...}')
        return None
    role = msg.get("role")
    if role not in ROLES:
        shown = "missing" if role is None else repr(role)
        report.error(f"{at}.role", f"unknown role {shown}", f"use one of {', '.join(ROLES)}")
        return None
    clean = dict(msg)
    if role == "assistant" and "content" not in msg and msg.get("tool_calls"):
        clean["content"] = ""
    else:
        text = _text_of(msg.get("content"))
        if text is None:
            kind = "missing" if "content" not in msg else type(msg["content"]).__name__
            report.error(f"{at}.content", f"must be text, got {kind}", "give the message's text as a string")
            return None
        clean["content"] = text
    calls = msg.get("tool_calls")
    if calls is not None and not (isinstance(calls, list) and all(_is_tool_call(c) for c in calls)):
        report.error(
            f"{at}.tool_calls",
            "malformed tool calls",
            'use [{"id": ..., "type": "function", "function": {"name": ..., "arguments": "<json>"}}]',
        )
    return clean


def _is_tool_call(call: Any) -> bool:
    fn = call.get("function") if isinstance(call, dict) else None
    return isinstance(fn, dict) and isinstance(fn.get("name"), str) and isinstance(fn.get("arguments", ""), str)


TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _check_tools(tools: Any, report: _RowProblems) -> set[str]:
    """The declared tools' names; a problem for each tool whose schema is not well formed."""
    ok = isinstance(tools, list) and all(
        isinstance(t, dict) and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)
        for t in tools
    )
    if not ok:
        report.error("tools", "malformed tools", 'use [{"type": "function", "function": {"name": ..., "parameters": {...}}}]')
        return set()
    for i, tool in enumerate(tools):
        function = tool["function"]
        if not TOOL_NAME.match(function["name"]):
            report.error(f"tools[{i}].function.name", f"{function['name']!r} is not a valid tool name",
                         "use letters, digits, _ and - (at most 64)")
        parameters = function.get("parameters")
        if parameters is not None and not (isinstance(parameters, dict) and parameters.get("type") == "object"
                                           and isinstance(parameters.get("properties", {}), dict)):
            report.error(f"tools[{i}].function.parameters", "not a JSON schema of an object",
                         'use {"type": "object", "properties": {"name": {"type": ...}}, "required": [...]}')
    return {t["function"]["name"] for t in tools}


def _check_transcript(messages: list[dict], declared: set[str] | None, report: _RowProblems) -> None:
    """Tool calls and tool messages agree: arguments are JSON objects, each call names a declared
    tool, each tool message answers a call made before it, and each call is answered."""
    open_calls: dict[str, str] = {}  # call id -> where it was made
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            for at, call_id in open_calls.items():
                report.error(at, f"tool call {call_id!r} has no tool message before the next assistant turn",
                             'add {"role": "tool", "tool_call_id": ..., "content": ...} after the call')
            open_calls = {}
            for j, call in enumerate(message.get("tool_calls") or []):
                if _is_tool_call(call):
                    open_calls[f"messages[{i}].tool_calls[{j}]"] = call.get("id")
                    _check_call(call["function"], f"messages[{i}].tool_calls[{j}].function", declared, report)
        elif message["role"] == "tool":
            call_id = message.get("tool_call_id")
            match = next((at for at, known in open_calls.items() if known == call_id), None)
            if match is None:
                report.error(f"messages[{i}].tool_call_id", f"{call_id!r} answers no tool call of the turn before",
                             "use the id of the assistant's tool call this result belongs to")
            else:
                del open_calls[match]


def _check_call(function: dict, at: str, declared: set[str] | None, report: _RowProblems) -> None:
    if declared is not None and function["name"] not in declared:
        report.error(f"{at}.name", f"calls {function['name']!r}, which the row's tools do not declare",
                     f"declare it in tools, or call one of: {', '.join(sorted(declared)) or 'none'}")
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        report.error(f"{at}.arguments", "not a JSON object", 'write the arguments as a JSON object string, e.g. "{\\"a\\": 1}"')


def _has_path(row: dict, path: str) -> bool:
    node: Any = row
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _check_last_turn(messages: list[dict], purpose: Purpose | None, report: _RowProblems) -> None:
    last = messages[-1]["role"]
    at = f"messages[{len(messages) - 1}].role"
    if purpose == "reinforcement" and last != "user":
        report.error(
            at,
            f"the last turn is from {last!r}, but reinforcement prompts end with the user's turn",
            "end the row with the user's message; the model writes the next assistant turn",
        )
    elif purpose == "supervised" and last != "assistant":
        report.error(
            at,
            f"the last turn is from {last!r}, but supervised rows end with the target assistant turn",
            "add the answer to learn as a final assistant message",
        )
    elif purpose == "supervised" and not messages[-1]["content"].strip() and not messages[-1].get("tool_calls"):
        report.error(f"messages[{len(messages) - 1}].content", "the target assistant turn is empty", "write the answer to learn")


def parse_row(
    raw: RawRow, source: str, purpose: Purpose | None, required_fields: set[str]
) -> tuple[Example | None, list[Problem]]:
    """Turn one raw row into an Example and say everything that is wrong with it.

    The example is None when the messages themselves cannot be read; otherwise it is
    returned even beside problems, so that checks that need it (prompt length) still run.
    """
    report = _RowProblems(source, raw.line)
    if raw.error is not None:
        report.error(None, raw.error, "each line must hold one JSON object")
        return None, report.found
    row = raw.value
    if not isinstance(row, dict):
        report.error(None, f"a row must be a JSON object, got {type(row).__name__}", 'write {"messages": [...], ...}')
        return None, report.found
    messages = row.get("messages")
    if messages is None:
        report.error("messages", "missing", 'add "messages": [{"role": "user", "content": "..."}]')
    elif not isinstance(messages, list) or not messages:
        report.error("messages", "must be a non-empty list of chat messages", 'add at least {"role": "user", "content": "..."}')
    clean = []
    if isinstance(messages, list):
        clean = [_check_message(m, f"messages[{i}]", report) for i, m in enumerate(messages)]
    declared = _check_tools(row["tools"], report) if "tools" in row else None
    for name in sorted(required_fields):
        if not _has_path(row, name):
            report.error(name, "missing, but the grader reads {{ item.%s }}" % name, f"add {name!r} to every row")
    if not clean or any(m is None for m in clean):
        return None, report.found
    _check_last_turn(clean, purpose, report)
    _check_transcript(clean, declared, report)
    item = dict(row)
    item["messages"] = clean
    return Example(messages=clean, item=item, tools=row.get("tools"), source=source, line=raw.line), report.found


def prompt_key(example: Example) -> str:
    """What identifies a prompt when looking for duplicates and train/valid overlap."""
    return json.dumps([example.prompt_messages, example.tools], sort_keys=True, ensure_ascii=False)


def check_dataset(
    path: str | Path,
    purpose: Purpose | None = None,
    *,
    required_fields: set[str] = frozenset(),
    count_prompt_tokens: Callable[[Example], int] | None = None,
    max_prompt_tokens: int | None = None,
    compare_with: "CheckedDataset | None" = None,
) -> CheckedDataset:
    """Read and check a dataset. Nothing is raised for bad rows: they become Problems."""
    source = str(path)
    checked = CheckedDataset(source)
    first_seen: dict[str, int] = {}
    for raw in read_rows(path):
        checked.rows += 1
        example, problems = parse_row(raw, source, purpose, set(required_fields))
        if example is not None and count_prompt_tokens is not None and max_prompt_tokens is not None:
            n = count_prompt_tokens(example)
            if n > max_prompt_tokens:
                problems.append(Problem(
                    "error", source, raw.line, "messages",
                    f"the prompt is {n} tokens, over the limit of {max_prompt_tokens}",
                    "shorten it, or raise rftkit.lengths.max_prompt_tokens (within the model's context)",
                ))
        checked.problems.extend(problems)
        if example is None or any(p.severity == "error" for p in problems):
            continue
        key = json.dumps(example.item, sort_keys=True, ensure_ascii=False)
        if key in first_seen:
            checked.problems.append(Problem(
                "warning", source, raw.line, None, f"duplicate of line {first_seen[key]}",
                "remove it unless the repetition is meant to weight the row",
            ))
        else:
            first_seen[key] = raw.line
        checked.examples.append(example)
    if checked.rows == 0:
        checked.problems.append(Problem("error", source, None, None, "no rows", "add one JSON object per line"))
    if compare_with is not None:
        checked.problems.extend(_overlap(checked, compare_with))
    return checked


def _overlap(checked: CheckedDataset, other: CheckedDataset) -> list[Problem]:
    seen = {prompt_key(e): e.line for e in other.examples}
    return [
        Problem(
            "warning", checked.source, e.line, "messages",
            f"the same prompt is in {other.source}:{seen[prompt_key(e)]}",
            "keep held-out prompts out of the training file, or validation overstates the gain",
        )
        for e in checked.examples
        if prompt_key(e) in seen
    ]


def load_examples(path: str | Path, purpose: Purpose, **checks: Any) -> list[Example]:
    """The examples of a dataset, or one RftkitError listing every error in it."""
    checked = check_dataset(path, purpose, **checks)
    errors = checked.errors
    if errors:
        shown = "\n".join(f"  {p}" for p in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise RftkitError(
            f"{path}: {len(errors)} problem(s) in {checked.rows} rows:\n{shown}{more}",
            fix=f"run `rftkit data validate {path} --for {purpose}` for the full report",
        )
    return checked.examples
