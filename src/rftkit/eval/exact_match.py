"""Exact-match of greedy answers against the final assistant turn of each example."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from rftkit.data.chat import encode_prompt
from rftkit.rollout.engine import Engine
from rftkit.rollout.hf import decode
from rftkit.types import Example, SamplingParams


@dataclass
class ExactMatch:
    correct: int
    total: int
    predictions: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def answers_match(prediction: str, target: str) -> bool:
    """Equal up to leading and trailing whitespace.

    >>> answers_match(" 42\\n", "42")
    True
    """
    return prediction.strip() == target.strip()


def greedy_answers(
    engine: Engine, tokenizer, examples: list[Example], *, max_new_tokens: int, batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """The engine's greedy answer to each example's prompt, in order."""
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    answers: list[str] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        completions = engine.generate([encode_prompt(tokenizer, e) for e in chunk], params)
        answers.extend(decode(tokenizer, c.token_ids) for (c,) in completions)
        if on_batch is not None:
            on_batch(len(chunk))
    return answers


def exact_match(engine: Engine, tokenizer, examples: list[Example], **kwargs) -> ExactMatch:
    """Greedy-decode every example and count answers equal to its target."""
    predictions = greedy_answers(engine, tokenizer, examples, **kwargs)
    correct = sum(answers_match(p, e.target or "") for p, e in zip(predictions, examples))
    return ExactMatch(correct, len(examples), predictions)
