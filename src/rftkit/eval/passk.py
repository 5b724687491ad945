"""pass@1, pass@k and mean reward on a validation set — graded by the job's own grader.

Evaluation reuses the training grader, so what is trained on is what is measured. With n = k
samples per prompt and c of them correct (reward >= threshold), pass@1 is the mean of c/n
and pass@k the share of prompts with c > 0 (Chen et al., 2021's estimator at n = k).
The baseline check runs this before training: pass@k = 0 means no sample ever earns reward,
so no gradient can ever point anywhere.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable

import torch

from rftkit.data.chat import encode_prompt
from rftkit.graders.base import Grader
from rftkit.graders.batch import grade_groups
from rftkit.rollout.engine import Engine
from rftkit.rollout.groups import sample_groups
from rftkit.types import Example, Group, SamplingParams


@dataclass
class EvalResult:
    k: int
    prompts: int
    pass_at_1: float
    pass_at_k: float
    reward_mean: float
    greedy_pass: float | None = None
    groups: list[Group] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        return {
            "k": self.k, "prompts": self.prompts, "pass_at_1": self.pass_at_1, "pass_at_k": self.pass_at_k,
            "reward_mean": self.reward_mean, "greedy_pass": self.greedy_pass,
        }


def sample_and_grade(
    engine: Engine, tokenizer, grader: Grader, examples: list[Example], *, samples: int, params: SamplingParams,
    batch_prompts: int, generator: torch.Generator | None, on_batch: Callable[[int], None] | None = None,
    sampler: Callable = sample_groups,
) -> list[Group]:
    """`samples` graded completions per example, generated `batch_prompts` prompts at a time
    (`sampler`: single completions, or a job's multi-turn episodes)."""
    groups: list[Group] = []
    for start in range(0, len(examples), batch_prompts):
        chunk = examples[start:start + batch_prompts]
        prompts = [encode_prompt(tokenizer, e) for e in chunk]
        new = sampler(engine, tokenizer, chunk, prompts, samples, params, generator=generator)
        grade_groups(grader, new)
        groups.extend(new)
        if on_batch is not None:
            on_batch(len(chunk))
    return groups


def evaluate(
    engine: Engine, tokenizer, grader: Grader, examples: list[Example], *, k: int, params: SamplingParams,
    threshold: float = 1.0, batch_prompts: int = 64, seed: int = 0, greedy: bool = True,
    on_batch: Callable[[int], None] | None = None, sampler: Callable = sample_groups,
) -> EvalResult:
    """Sample k completions per prompt (and one greedy answer when `greedy`), grade, summarise.
    The engine samples with the weights it has: sync it first (`RLTrainer.sync_engine`)."""
    generator = torch.Generator().manual_seed(seed)
    groups = sample_and_grade(engine, tokenizer, grader, examples, samples=k, params=params,
                              batch_prompts=max(1, batch_prompts // k), generator=generator, on_batch=on_batch,
                              sampler=sampler)
    correct = [sum(r >= threshold for r in g.rewards) for g in groups]
    result = EvalResult(
        k=k,
        prompts=len(groups),
        pass_at_1=statistics.fmean(c / k for c in correct) if groups else 0.0,
        pass_at_k=statistics.fmean(c > 0 for c in correct) if groups else 0.0,
        reward_mean=statistics.fmean(r for g in groups for r in g.rewards) if groups else 0.0,
        groups=groups,
    )
    if greedy and examples:
        greedy_params = SamplingParams(params.max_new_tokens, temperature=0.0)
        answers = sample_and_grade(engine, tokenizer, grader, examples, samples=1, params=greedy_params,
                                   batch_prompts=batch_prompts, generator=None, sampler=sampler)
        result.greedy_pass = statistics.fmean(g.rewards[0] >= threshold for g in answers)
    return result
