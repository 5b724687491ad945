"""`environment_reward`: the reward a multi-turn episode's environment gave (its `reward()`),
and `EpisodeGrader`, which applies a job's per-stop-reason rewards on top of any grader.

A job whose environment defines `reward()` may leave `method.reinforcement.grader` out; it is
then graded by `{"type": "environment_reward"}`. A sample whose environment gave no reward (or
whose environment failed) gets 0, with the error named, like any grader failure.
"""

from __future__ import annotations

from typing import Literal

from rftkit.graders.base import Grader, GraderContext, GraderFailure, GraderSpec, register
from rftkit.types import Grade, Sample


class EnvironmentRewardSpec(GraderSpec):
    type: Literal["environment_reward"]


@register("environment_reward")
class EnvironmentReward(Grader):
    spec_model = EnvironmentRewardSpec

    def score(self, sample: Sample, item: dict) -> float:
        if sample.episode_error is not None:
            raise GraderFailure("other_error", sample.episode_error)
        if sample.environment_reward is None:
            raise GraderFailure("other_error", "the environment gave no reward (its reward() returned None, or "
                                "the sample is not an episode)")
        return sample.environment_reward


class EpisodeGrader(Grader):
    """A grader whose reward is replaced for episodes that ended a given way: `stop_rewards`
    maps a stop reason (parse_error, timeout, ...) to the reward such an episode gets."""

    def __init__(self, inner: Grader, stop_rewards: dict[str, float]):
        super().__init__(inner.spec, inner.context if hasattr(inner, "context") else GraderContext())
        self.inner, self.stop_rewards = inner, dict(stop_rewards)

    def grade_many(self, samples: list[Sample], items: list[dict]) -> list[Grade]:
        grades = self.inner.grade_many(samples, items)
        for sample, grade in zip(samples, grades):
            if sample.stop_reason in self.stop_rewards:
                grade.reward = self.stop_rewards[sample.stop_reason]
                grade.metadata["stop_reason"] = sample.stop_reason
        return grades

    def grade(self, sample: Sample, item: dict) -> Grade:
        return self.grade_many([sample], [item])[0]

    def problems(self) -> list[str]:
        return self.inner.problems()

    def close(self) -> None:
        self.inner.close()
