"""How a job draws its samples and grades them: single completions, or multi-turn episodes.

A job without `rftkit.environment.factory` samples one completion per draw
(`rollout.groups.sample_groups`) and is graded by `method.reinforcement.grader`. With one, it
runs episodes (`rollout.episodes.EpisodeSampler`); the environment's `reward()`, when it defines
one, is the reward (then the job gives no grader), and `environment.stop_rewards` overrides the
reward of episodes that stopped a given way. Training, the baseline check, validation and
`rftkit eval` all take the sampler from here, so what is measured is what is trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rftkit.config import EnvironmentOptions, JobSpec
from rftkit.errors import RftkitError
from rftkit.graders import Grader, GraderContext, build_grader
from rftkit.graders.environment import EpisodeGrader
from rftkit.rollout.env import ToolLimits, defines_reward, env_maker, load_factory
from rftkit.rollout.episodes import EpisodeLimits, EpisodeSampler
from rftkit.rollout.groups import sample_groups

ENVIRONMENT_REWARD = {"type": "environment_reward", "name": "environment"}


@dataclass(frozen=True)
class JobRollout:
    """The job's sampler (called like `sample_groups`), its grader spec, and the per-stop-reason
    rewards applied on top of that grader (episodes only)."""

    sampler: Callable
    grader_spec: dict
    stop_rewards: dict[str, float] | None = None

    def grader(self, context: GraderContext, source: str = "method.reinforcement.grader") -> Grader:
        grader = build_grader(self.grader_spec, context, source=source)
        return grader if self.stop_rewards is None else EpisodeGrader(grader, self.stop_rewards)


def job_rollout(spec: JobSpec, base_dir: Path | None, template_vars: dict | None = None) -> JobRollout:
    grader = spec.method.reinforcement.grader if spec.method.reinforcement else None
    return rollout_for(grader, spec.rftkit.environment, base_dir, template_vars)


def rollout_for(grader: dict | None, options: EnvironmentOptions, base_dir: Path | None,
                template_vars: dict | None = None) -> JobRollout:
    """The rollout of a grader (None: the environment's reward) and `rftkit.environment` options;
    `base_dir` is where a relative factory path starts; `template_vars` reach the chat template
    of every episode's prompt (`reasoning_effort`)."""
    if options.factory is None:
        if grader is None:
            raise RftkitError("a grader is required without an environment", fix="give a grader spec")
        return JobRollout(sample_groups, grader)
    cls = load_factory(options.factory, base_dir)
    rewarded = defines_reward(cls)
    if rewarded and grader is not None:
        raise RftkitError(
            f"method.reinforcement.grader: the environment {cls.__name__} defines reward(), which is the reward",
            fix="leave the grader out, or remove reward() from the environment to grade with the grader")
    if not rewarded and grader is None:
        raise RftkitError(f"method.reinforcement.grader: required, because {cls.__name__} defines no reward()",
                          fix="give a grader (it sees sample.output_text, sample.output_tools and "
                              "sample.messages), or define reward(self) -> float")
    limits = ToolLimits(options.tool_timeout_s, options.max_tool_calls, options.on_tool_error, options.on_parse_error)
    sampler = EpisodeSampler(env_maker(cls, limits), EpisodeLimits(options.max_turns, options.max_tokens,
                                                                    frozenset(options.masked_stop_reasons)),
                             **(template_vars or {}))
    return JobRollout(sampler, grader or ENVIRONMENT_REWARD, dict(options.stop_rewards))
