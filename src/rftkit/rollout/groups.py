"""Sampling G completions for each of B examples in one batched generation call."""

from __future__ import annotations

import torch

from rftkit.rollout.hf import SamplingParams, decode, evaluating, generate
from rftkit.types import Example, Group, Sample


def sample_groups(
    model: torch.nn.Module,
    tokenizer,
    examples: list[Example],
    prompts: list[list[int]],
    group_size: int,
    params: SamplingParams,
    *,
    stop_ids: set[int],
    generator: torch.Generator | None = None,
) -> list[Group]:
    """One Group per example: `group_size` samples of its (already encoded) prompt."""
    repeated = [prompt for prompt in prompts for _ in range(group_size)]
    with evaluating(model):
        completions = generate(model, repeated, params, pad_id=tokenizer.pad_token_id, stop_ids=stop_ids, generator=generator)
    groups = []
    for index, (example, prompt) in enumerate(zip(examples, prompts)):
        mine = completions[index * group_size: (index + 1) * group_size]
        samples = [
            Sample(decode(tokenizer, c), completion_ids=c.token_ids, finish_reason=c.finish_reason, logprobs=c.logprobs)
            for c in mine
        ]
        groups.append(Group(example, prompt, samples))
    return groups
