"""The nouns that flow between rftkit's stages.

- `Example`: one dataset row — the chat prompt, optional tools, and every other field, which
  graders reach as `item` (`{{ item.answer }}`).
- `Sample`: one completion the policy wrote for an example — what graders see as `sample`.
- `Grade`: what a grader says of a sample — a reward, sub-rewards per named grader, and
  metadata shaped like OpenAI's `graders/run` response.
- `Group`: the G samples drawn for one example, with their grades: the unit advantages
  are computed over.
- `Batch`: a step's sequences as padded tensors, ready for log-probs and the update.

Tensors never travel in dicts between stages. Shape suffixes: N sequences, T tokens of a
whole sequence, C completion tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the API server imports these nouns without importing torch
    import torch

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
    logprobs: list[float] = field(default_factory=list)  # per completion token, as sampled

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


@dataclass
class Group:
    """The samples drawn for one example, and their grades (filled by the grading phase)."""

    example: Example
    prompt_ids: list[int]
    samples: list[Sample]
    grades: list[Grade] = field(default_factory=list)

    @property
    def rewards(self) -> list[float]:
        return [g.reward for g in self.grades]


@dataclass
class Batch:
    """N sequences laid out as [left-padded prompt | right-padded completion].

    Completion token j of row n sits at column prompt_width + j and is predicted from column
    prompt_width + j - 1. Position ids follow the attention mask, exactly as when sampling.
    """

    input_ids_NT: "torch.Tensor"
    attention_mask_NT: "torch.Tensor"
    position_ids_NT: "torch.Tensor"
    completion_mask_NC: "torch.Tensor"
    prompt_width: int

    @property
    def completion_ids_NC(self) -> "torch.Tensor":
        return self.input_ids_NT[:, self.prompt_width:]

    def rows(self, index: "torch.Tensor | slice") -> "Batch":
        """A sub-batch of rows, trimmed of columns that are padding in every remaining row."""
        attention = self.attention_mask_NT[index]
        completion = self.completion_mask_NC[index]
        first = int((attention[:, : self.prompt_width].sum(0) > 0).nonzero()[0]) if self.prompt_width else 0
        used = completion.sum(0) > 0
        width = int(used.nonzero()[-1]) + 1 if bool(used.any()) else 1
        end = self.prompt_width + width
        return Batch(
            self.input_ids_NT[index][:, first:end],
            attention[:, first:end],
            self.position_ids_NT[index][:, first:end],
            completion[:, :width],
            self.prompt_width - first,
        )
