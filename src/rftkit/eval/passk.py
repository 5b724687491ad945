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
from rftkit.scale.parallel import SINGLE, Parallel
from rftkit.types import Example, Group, SamplingParams, Shard


class EvalStopped(Exception):
    """An evaluation left unfinished because a stop was requested between two batches."""


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


def reward_spread(groups: list[Group]) -> dict:
    """How the rewards of `groups` spread: mean, max, and the share of samples above 0.

    >>> from rftkit.types import Grade
    >>> def group(*rewards): return Group(Example([], {}), [], [], [Grade(r) for r in rewards])
    >>> reward_spread([group(0.0, 0.5), group(0.25, 0.0)])
    {'mean': 0.1875, 'max': 0.5, 'positive_share': 0.5}
    """
    rewards = [r for g in groups for r in g.rewards]
    if not rewards:
        return {"mean": 0.0, "max": 0.0, "positive_share": 0.0}
    return {"mean": statistics.fmean(rewards), "max": max(rewards),
            "positive_share": sum(r > 0 for r in rewards) / len(rewards)}


def sample_and_grade(
    engine: Engine, tokenizer, grader: Grader, examples: list[Example], *, samples: int, params: SamplingParams,
    batch_prompts: int, seed: int | None, on_batch: Callable[[int], None] | None = None,
    template_vars: dict | None = None, should_stop: Callable[[], bool] | None = None,
    sampler: Callable = sample_groups, parallel: Parallel = SINGLE,
) -> list[Group]:
    """`samples` graded completions per example, generated `batch_prompts` prompts at a time
    (`sampler`: single completions, or a job's multi-turn episodes). Batch b samples from a
    generator seeded by (`seed`, b) (None: unseeded). `template_vars` reach the chat template
    (`reasoning_effort`). `should_stop` is asked between batches: when it answers True (on any
    rank), `EvalStopped` is raised (a pause or shutdown request). Across data-parallel ranks
    each samples and grades its share of every batch, and every rank returns all the groups."""
    groups: list[Group] = []
    for start in range(0, len(examples), batch_prompts):
        chunk = examples[start:start + batch_prompts]
        if parallel.any(should_stop is not None and should_stop()):
            raise EvalStopped(f"stopped after {start} of {len(examples)} prompts")
        share = parallel.share(len(chunk))
        mine = chunk[share.start:share.stop]
        new: list[Group] = []
        if mine:
            prompts = [encode_prompt(tokenizer, e, **(template_vars or {})) for e in mine]
            generator = None if seed is None else torch.Generator().manual_seed(seed * 100_003 + start)
            new = sampler(engine, tokenizer, mine, prompts, samples, params, generator=generator,
                          shard=Shard(share.start, len(chunk)))
            grade_groups(grader, new)
        groups.extend(parallel.gather(new))
        if on_batch is not None:
            on_batch(len(chunk))
    return groups


def evaluate(
    engine: Engine, tokenizer, grader: Grader, examples: list[Example], *, k: int, params: SamplingParams,
    threshold: float = 1.0, batch_prompts: int = 64, seed: int = 0, greedy: bool = True,
    on_batch: Callable[[int], None] | None = None, template_vars: dict | None = None,
    should_stop: Callable[[], bool] | None = None, sampler: Callable = sample_groups, parallel: Parallel = SINGLE,
) -> EvalResult:
    """Sample k completions per prompt (and one greedy answer when `greedy`), grade, summarise.
    The engine samples with the weights it has: sync it first (`RLTrainer.sync_engine`).
    `template_vars`, `should_stop` and `parallel` as in `sample_and_grade`."""
    per_batch = {"template_vars": template_vars, "should_stop": should_stop, "sampler": sampler,
                 "parallel": parallel}
    groups = sample_and_grade(engine, tokenizer, grader, examples, samples=k, params=params,
                              batch_prompts=max(1, batch_prompts // k), seed=seed, on_batch=on_batch,
                              **per_batch)
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
                                   batch_prompts=batch_prompts, seed=None, **per_batch)
        result.greedy_pass = statistics.fmean(g.rewards[0] >= threshold for g in answers)
    return result
