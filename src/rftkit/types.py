"""The nouns that flow between rftkit's stages.

- `Example`: one dataset row — the chat prompt, optional tools, and every other field, which
  graders reach as `item` (`{{ item.answer }}`).
- `Sample`: one completion the policy wrote for an example — what graders see as `sample`.
- `Grade`: what a grader says of a sample — a reward, sub-rewards per named grader, and
  metadata shaped like OpenAI's `graders/run` response.

Tensors never travel in dicts between stages; later stages add `Group` and `Batch` here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class Example:
    """One dataset row.

    `messages` are OpenAI chat messages (`role`, `content` as a string, plus any other keys
    such as `tool_calls`); `item` is the whole row as a grader sees it; `source` and `line`
    say where the row came from (a JSONL line, or a 1-based row for parquet/HF datasets).
    """

    messages: list[dict[str, Any]]
    item: dict[str, Any]
    tools: list[dict[str, Any]] | None = None
    source: str = "<memory>"
    line: int = 0

    @property
    def prompt_messages(self) -> list[dict[str, Any]]:
        """The conversation before a final assistant turn (all of it when there is none)."""
        if self.messages and self.messages[-1].get("role") == "assistant":
            return self.messages[:-1]
        return self.messages

    @property
    def target(self) -> str | None:
        """The final assistant turn's text: the label for supervised training and exact-match."""
        if self.messages and self.messages[-1].get("role") == "assistant":
            return self.messages[-1].get("content") or ""
        return None

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass
class Sample:
    """One completion for one example: graders see it as `sample`.

    `output_text` is the decoded completion without special tokens; `output_tools` the tool
    calls it made (OpenAI's `tool_calls` shape); `completion_ids` its token ids, ending with
    the end-of-turn token when `finish_reason` is "stop".
    """

    output_text: str
    output_tools: list[dict[str, Any]] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    finish_reason: str = "stop"

    @property
    def output_json(self) -> Any:
        """The completion parsed as JSON, or None when it is not valid JSON."""
        try:
            return json.loads(self.output_text)
        except (ValueError, TypeError):
            return None


@dataclass
class Grade:
    """A grader's verdict: `reward` (finite float), `sub_rewards` per named sub-grader, and
    `metadata` as in OpenAI's graders/run response (name, type, execution_time, scores,
    token_usage, errors)."""

    reward: float
    sub_rewards: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
