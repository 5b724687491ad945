"""`reward_model`: a reward model trained by `rftkit rm train` scores samples in batches.

    {"type": "reward_model", "name": "rm", "path": "runs/rm", "criteria": {"accuracy": 0.6, "safety": 0.4}}
    {"type": "reward_model", "name": "rm", "path": ["runs/rm-a", "runs/rm-b"], "criteria": {"preference": 1}}

Each criterion is one of the reward model's heads (`preference`, a rated criterion, `safe`);
its calibrated score in [0, 1] is a sub-reward, and the reward is their weighted mean, so it
is in [0, 1] too. Without `criteria`, the `preference` head alone (or, without one, every
head equally). Several paths make an ensemble: the scores are averaged, and the spread of
the members' rewards (population std) is reported as the sub-reward `ensemble_disagreement`
— a learned reward that members disagree on is where a policy finds exploits (Coste et al.,
2024), so it is worth watching next to the reward.

The models load on first use and score `batch_size` samples per forward pass. torch and the
model code (rftkit.models.reward) are imported then, not when graders are imported: the API
server imports graders and no torch.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Literal

from pydantic import Field, field_validator

from rftkit.errors import RftkitError
from rftkit.graders.base import Grader, GraderFailure, GraderSpec, Score, register
from rftkit.graders.paths import local_path
from rftkit.types import Grade, Sample

DISAGREEMENT = "ensemble_disagreement"


class RewardModelSpec(GraderSpec):
    type: Literal["reward_model"]
    path: str | list[str] = Field(description="A reward model directory, or several for an ensemble.")
    criteria: dict[str, float] | None = Field(None, description="Head name -> weight; null: the preference head.")
    batch_size: int = Field(32, ge=1, description="Samples per forward pass.")
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("path")
    @classmethod
    def _some_path(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one reward model directory")
        return value

    @field_validator("criteria")
    @classmethod
    def _weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and (not value or any(w < 0 for w in value.values()) or sum(value.values()) <= 0):
            raise ValueError("criteria: weights are >= 0 and at least one is > 0, e.g. {\"preference\": 1}")
        return value


def default_criteria(heads: list[str]) -> dict[str, float]:
    """The preference head if there is one, else every head equally.

    >>> default_criteria(["accuracy", "preference"]), default_criteria(["accuracy", "safe"])
    ({'preference': 1.0}, {'accuracy': 1.0, 'safe': 1.0})
    """
    return {"preference": 1.0} if "preference" in heads else {h: 1.0 for h in heads}


def combine(member_scores: list[dict[str, float]], criteria: dict[str, float]) -> Score:
    """Weighted mean over criteria per member, averaged over members; disagreement when several.

    >>> s = combine([{"a": 1.0, "b": 0.0}, {"a": 0.5, "b": 0.5}], {"a": 3, "b": 1})
    >>> s.reward, s.sub_rewards
    (0.625, {'a': 0.75, 'b': 0.25, 'ensemble_disagreement': 0.125})
    """
    total = sum(criteria.values())
    rewards = [sum(w * scores[c] for c, w in criteria.items()) / total for scores in member_scores]
    sub = {c: statistics.fmean(scores[c] for scores in member_scores) for c in criteria}
    details = {"members": rewards} if len(member_scores) > 1 else {}
    if len(member_scores) > 1:
        sub[DISAGREEMENT] = statistics.pstdev(rewards)
    return Score(reward=statistics.fmean(rewards), sub_rewards=sub, scores={**sub, **details})


@register("reward_model")
class RewardModelGrader(Grader):
    spec_model = RewardModelSpec

    def __init__(self, spec: RewardModelSpec, context):
        super().__init__(spec, context)
        from rftkit.models.reward_artifact import read_meta  # json only: torch waits for first use

        paths = [spec.path] if isinstance(spec.path, str) else list(spec.path)
        self.paths = [local_path(p, context.base_dir, f"{self.name}: path") for p in paths]
        heads = [[h["name"] for h in read_meta(p)["heads"]] for p in self.paths]
        self.criteria = dict(spec.criteria) if spec.criteria else default_criteria(heads[0])
        for path, names in zip(self.paths, heads):
            missing = [c for c in self.criteria if c not in names]
            if missing:
                raise RftkitError(f"{self.name}: criteria: {path} has no head {', '.join(map(repr, missing))}",
                                  fix=f"use its heads: {', '.join(names)}")
        self._models = None
        self._lock = threading.Lock()

    def models(self) -> list:
        with self._lock:
            if self._models is None:
                from rftkit.models.reward import load_reward_model

                self._models = [load_reward_model(p, self.spec.device) for p in self.paths]
            return self._models

    def score(self, sample: Sample, item: dict) -> Score:
        return self.score_many([sample], [item])[0]

    def score_many(self, samples: list[Sample], items: list[dict]) -> list[Score]:
        prompts = [prompt_of(item) for item in items]
        members = [m.score(prompts, [s.output_text for s in samples], self.spec.batch_size) for m in self.models()]
        return [combine([member[i] for member in members], self.criteria) for i in range(len(samples))]

    def grade_many(self, samples: list[Sample], items: list[dict]) -> list[Grade]:
        """One batched pass per member over every sample with a prompt; the rest score 0 with the error named."""
        start = time.perf_counter()
        ready = [i for i, item in enumerate(items) if isinstance(item.get("messages"), list)]
        scores: dict[int, Score] = {i: Score(0.0, errors={"invalid_variable_error": "the item has no messages"})
                                    for i in range(len(items)) if i not in set(ready)}
        try:
            scored = self.score_many([samples[i] for i in ready], [items[i] for i in ready]) if ready else []
            scores.update(dict(zip(ready, scored)))
        except RftkitError:
            raise
        except Exception as err:  # a failing model must not stop training: reward 0, error named
            scores.update({i: Score(0.0, errors={"other_error": f"{type(err).__name__}: {err}"}) for i in ready})
        seconds = (time.perf_counter() - start) / max(len(samples), 1)
        return [self._grade_from(scores[i], seconds) for i in range(len(samples))]


def prompt_of(item: dict) -> list[dict]:
    """The conversation the sample answers: the item's messages before any final assistant turn."""
    messages = item.get("messages")
    if not isinstance(messages, list):
        raise GraderFailure("invalid_variable_error", "the item has no messages")
    return messages[:-1] if messages and messages[-1].get("role") == "assistant" else messages
