"""Sampling G completions for each of B examples in one engine call."""

from __future__ import annotations

import torch

from rftkit.rollout.engine import Completion, Engine
from rftkit.rollout.hf import decode
from rftkit.types import Example, Group, Sample, SamplingParams, Shard, Trajectory


def to_sample(tokenizer, prompt: list[int], completion: Completion) -> Sample:
    """A single-turn completion as graders see it, with its trajectory."""
    trajectory = Trajectory.single_turn(prompt, completion.token_ids, completion.logprobs,
                                        completion.finish_reason, completion.policy_version)
    return Sample(decode(tokenizer, completion.token_ids), trajectory=trajectory)


def sample_groups(
    engine: Engine,
    tokenizer,
    examples: list[Example],
    prompts: list[list[int]],
    group_size: int,
    params: SamplingParams,
    *,
    generator: torch.Generator | None = None,
    shard: Shard | None = None,
) -> list[Group]:
    """One Group per example: `group_size` samples of its (already encoded) prompt. `shard`:
    where these examples sit in a batch split across ranks (`Engine.generate`)."""
    completions = engine.generate(prompts, params, n=group_size, generator=generator, shard=shard)
    return [Group(example, prompt, [to_sample(tokenizer, prompt, c) for c in drawn])
            for example, prompt, drawn in zip(examples, prompts, completions)]
