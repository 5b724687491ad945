"""Grading many samples at once, with the figures training logs about graders."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rftkit.graders.base import ERROR_KINDS, Grader
from rftkit.types import Grade, Group, Sample


@dataclass
class BatchGrades:
    grades: list[Grade]
    seconds: float

    @property
    def rewards(self) -> list[float]:
        return [g.reward for g in self.grades]

    def stats(self) -> dict[str, dict[str, float]]:
        """Per grader (the top one and each sub-reward): mean reward and error rate."""
        if not self.grades:
            return {}
        top = self.grades[0].metadata.get("name", "grader")
        table = {top: {"mean": _mean(self.rewards), "error_rate": _mean([float(has_error(g)) for g in self.grades])}}
        for key in self.grades[0].sub_rewards:
            table[key] = {"mean": _mean([g.sub_rewards.get(key, 0.0) for g in self.grades])}
        return table


def has_error(grade: Grade) -> bool:
    errors = grade.metadata.get("errors", {})
    return any(errors.get(kind) for kind in ERROR_KINDS)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def grade_batch(grader: Grader, samples: list[Sample], items: list[dict]) -> BatchGrades:
    """Grade `samples[i]` against `items[i]` for every i, preserving order."""
    if len(samples) != len(items):
        raise ValueError(f"{len(samples)} samples but {len(items)} items")
    start = time.perf_counter()
    grades = grader.grade_many(samples, items)
    return BatchGrades(grades, time.perf_counter() - start)


def grade_groups(grader: Grader, groups: list[Group]) -> BatchGrades:
    """Grade every sample of `groups` in one batch, and give each group its grades."""
    graded = grade_batch(grader, [s for g in groups for s in g.samples],
                         [g.example.item for g in groups for _ in g.samples])
    at = 0
    for group in groups:
        group.grades = graded.grades[at: at + len(group.samples)]
        at += len(group.samples)
    return graded
