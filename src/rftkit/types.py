"""The nouns that flow between rftkit's stages.

- `Example`: one dataset row — the chat prompt, optional tools, and every other field, which
  graders reach as `item` (`{{ item.answer }}`).
- `SamplingParams`: how an engine samples (length limit, temperature, top-p, top-k).
- `Trajectory`: what the policy produced for one prompt, token for token as the engine sampled
  it: the completion ids, their sampling log-probs, a loss mask (1 for tokens the policy
  sampled, 0 for tokens put in by a template, a tool or an environment), the turns, why it
  stopped and which policy version sampled it. The trainer learns from exactly these ids;
  nothing is re-encoded from decoded text.
- `Sample`: a trajectory as graders see it (`sample.output_text`, `sample.output_tools`).
- `Grade`: what a grader says of a sample — a reward, sub-rewards per named grader, and
  metadata shaped like OpenAI's `graders/run` response.
- `Group`: the G samples drawn for one example, with their grades: the unit advantages
  are computed over.
- `Batch`: a step's sequences as padded tensors, with the loss mask and the group layout,
  ready for log-probs and the update.

Tensors never travel in dicts between stages. Shape suffixes: N sequences, T tokens of a
whole sequence, C completion tokens, G samples per group.
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


@dataclass(frozen=True)
class SamplingParams:
    """How an engine samples: at most `max_new_tokens` per completion; temperature 0 is greedy;
    `top_k` 0 keeps every token."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Shard:
    """Where one call's prompts sit in a batch split across ranks: prompts `offset` to
    `offset + len(prompts)` of `total`. An engine that draws its randomness for the whole batch
    and keeps its share samples the same tokens for a prompt however the batch is split, so N
    data-parallel ranks draw what one process would (the in-process engines and vLLM do)."""

    offset: int
    total: int

    def rows(self, n: int) -> "Shard":
        """The same place counted in rows, each prompt repeated `n` times."""
        return Shard(self.offset * n, self.total * n)


@dataclass(frozen=True)
class Turn:
    """One stretch of a trajectory's completion, columns [start, end): who wrote it.

    `role` "assistant" marks tokens the policy sampled (loss mask 1); any other role ("tool",
    "user", "template") marks tokens put in around them (loss mask 0)."""

    role: str
    start: int
    end: int


# Why an episode ended. A single completion ends "completed" (it wrote its end-of-turn token) or
# "max_tokens" (it reached the length limit).
STOP_REASONS = ("completed", "max_tokens", "max_turns", "parse_error", "tool_error", "timeout")


@dataclass(frozen=True)
class Trajectory:
    """The tokens after a prompt, exactly as sampled, and what the trainer needs to learn from them.

    `logprobs[i]` is the sampling engine's log-probability of `completion_ids[i]` (0.0 where the
    token was not sampled); `loss_mask[i]` is 1 where the policy sampled the token. `finish_reason`
    is the engine's for the last model turn ("stop": it wrote an end-of-turn token, which ends
    `completion_ids`; "length": the limit). `policy_version` counts the optimizer steps taken by
    the policy that sampled it.
    """

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    loss_mask: tuple[int, ...]
    turns: tuple[Turn, ...]
    finish_reason: str
    stop_reason: str
    policy_version: int = 0

    def __post_init__(self):
        if not len(self.completion_ids) == len(self.logprobs) == len(self.loss_mask):
            raise ValueError("a trajectory needs one log-prob and one loss-mask entry per completion token")
        if self.stop_reason not in STOP_REASONS:
            raise ValueError(f"stop_reason {self.stop_reason!r}: one of {', '.join(STOP_REASONS)}")

    @classmethod
    def single_turn(cls, prompt_ids, completion_ids, logprobs, finish_reason: str,
                    policy_version: int = 0) -> "Trajectory":
        """One assistant turn: every completion token sampled by the policy.

        >>> t = Trajectory.single_turn([1, 2], [5, 0], [-0.5, -0.1], "stop")
        >>> t.loss_mask, t.turns, t.stop_reason
        ((1, 1), (Turn(role='assistant', start=0, end=2),), 'completed')
        """
        completion_ids = tuple(completion_ids)
        return cls(tuple(prompt_ids), completion_ids, tuple(logprobs), (1,) * len(completion_ids),
                   (Turn("assistant", 0, len(completion_ids)),), finish_reason,
                   "completed" if finish_reason == "stop" else "max_tokens", policy_version)

    @property
    def sampled_tokens(self) -> int:
        return sum(self.loss_mask)


@dataclass
class Sample:
    """A completion for one example as graders see it: `sample` in their templates.

    `output_text` is the decoded answer without special tokens (of an episode: its last model
    turn's text, without tool calls); `output_tools` the tool calls it made (OpenAI's `tool_calls`
    shape; an episode's calls also carry `name`, `arguments`, `result` and `error`). `trajectory`
    holds the token ids behind it when the sample was drawn by rftkit (a sample handed to
    `graders/run` has none). An episode also has `messages` (the whole conversation, prompt
    included, in OpenAI's shape), the `environment_reward` its environment gave, if any, and the
    `episode_error` that ended it, if an environment failed.
    """

    output_text: str
    output_tools: list[dict[str, Any]] = field(default_factory=list)
    trajectory: Trajectory | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    environment_reward: float | None = None
    episode_error: str | None = None

    @property
    def completion_ids(self) -> tuple[int, ...]:
        return self.trajectory.completion_ids if self.trajectory is not None else ()

    @property
    def finish_reason(self) -> str:
        return self.trajectory.finish_reason if self.trajectory is not None else "stop"

    @property
    def stop_reason(self) -> str:
        return self.trajectory.stop_reason if self.trajectory is not None else "completed"

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


@dataclass(frozen=True)
class Batch:
    """N sequences laid out as [left-padded prompt | right-padded completion], in groups.

    Completion token j of row n sits at column prompt_width + j and is predicted from column
    prompt_width + j - 1. Position ids follow the attention mask, exactly as when sampling.
    `completion_mask_NC` marks the completion tokens that are there (the model reads them);
    `loss_mask_NC` those the policy sampled, the only ones a loss is computed on. Rows of one
    group share its prompt: `group_N` numbers each row's group, and rows of a group are
    consecutive.
    """

    input_ids_NT: "torch.Tensor"
    attention_mask_NT: "torch.Tensor"
    position_ids_NT: "torch.Tensor"
    completion_mask_NC: "torch.Tensor"
    loss_mask_NC: "torch.Tensor"
    group_N: "torch.Tensor"
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
            self.loss_mask_NC[index][:, :width],
            self.group_N[index],
            self.prompt_width - first,
        )
