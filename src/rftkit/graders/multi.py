"""`multi`: several graders, combined by a formula over their keys (OpenAI's grader).

    {"type": "multi", "name": "mix", "calculate_output": "0.7 * exact + 0.3 * fuzzy",
     "graders": {"exact": {...string_check...}, "fuzzy": {...text_similarity...}}}

Each sub-grader's reward is a sub-reward under its key. A sub-grader's failure scores 0
for its key and its error is reported on the multi grade too; a formula that does not parse
is a `formula_parse_error` for every sample (`rftkit graders validate` reports it first).
Batches run every sub-grader's own `grade_many` (pools, concurrent judges), the sub-graders
side by side in threads.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import field_validator

from rftkit.graders.base import Grader, GraderSpec, Score, build_grader, finite_reward, register
from rftkit.graders.formula import FormulaError, evaluate, parse
from rftkit.types import Grade, Sample


class MultiSpec(GraderSpec):
    type: Literal["multi"]
    graders: dict[str, dict[str, Any]]
    calculate_output: str

    @field_validator("graders")
    @classmethod
    def _not_empty(cls, value: dict) -> dict:
        if not value:
            raise ValueError("a multi grader needs at least one sub-grader")
        return value


@register("multi")
class Multi(Grader):
    spec_model = MultiSpec

    def __init__(self, spec: MultiSpec, context):
        super().__init__(spec, context)
        self.graders: dict[str, Grader] = {}
        try:
            for key, sub in spec.graders.items():
                self.graders[key] = build_grader(sub, context, source=f"graders.{key}")
        except BaseException:
            self.close()
            raise
        try:
            self.formula = parse(spec.calculate_output, set(spec.graders))
            self.formula_error: str | None = None
        except FormulaError as err:
            self.formula, self.formula_error = None, f"calculate_output: {err}"

    def problems(self) -> list[str]:
        found = [self.formula_error] if self.formula_error else []
        for key, grader in self.graders.items():
            found += [f"graders.{key}: {p}" for p in grader.problems()]
        return found

    def score(self, sample: Sample, item: dict) -> Score:
        return self.combine({key: g.grade(sample, item) for key, g in self.graders.items()})

    def grade_many(self, samples: list[Sample], items: list[dict]) -> list[Grade]:
        start = time.perf_counter()
        keys = list(self.graders)
        with ThreadPoolExecutor(max(1, len(keys)), thread_name_prefix="multi") as pool:
            columns = list(pool.map(lambda key: self.graders[key].grade_many(samples, items), keys))
        seconds = (time.perf_counter() - start) / max(1, len(samples))
        grades = []
        for row in zip(*columns):
            grades.append(self._safe_grade(lambda row=row: self.combine(dict(zip(keys, row))), seconds))
        return grades

    def _safe_grade(self, make_score, seconds: float) -> Grade:
        try:
            score = make_score()
            score.reward = finite_reward(score.reward)
        except Exception as err:  # the same rule as Grader.grade: record, reward 0
            kind = getattr(err, "kind", "other_error")
            score = Score(reward=0.0, errors={kind: getattr(err, "details", str(err))})
        return self._grade_from(score, seconds)

    def combine(self, grades: dict[str, Grade]) -> Score:
        """The formula over the sub-rewards, with the sub-graders' errors and scores kept."""
        rewards = {key: g.reward for key, g in grades.items()}
        errors = {}
        for key, grade in grades.items():
            for kind, flagged in grade.metadata.get("errors", {}).items():
                if flagged is True:
                    errors.setdefault(kind, f"{key}: {grade.metadata['errors'].get(kind + '_details', '')}")
        scores = {key: g.metadata.get("scores", {}) for key, g in grades.items()}
        usage = _sum_usage([g.metadata.get("token_usage") for g in grades.values()])
        if self.formula is None:
            return Score(0.0, rewards, scores, usage, errors={**errors, "formula_parse_error": self.formula_error})
        try:
            reward = evaluate(self.formula, rewards)
        except (ZeroDivisionError, ValueError, OverflowError) as err:
            return Score(0.0, rewards, scores, usage, errors={**errors, "other_error": f"calculate_output: {err}"})
        if not math.isfinite(reward):
            return Score(0.0, rewards, scores, usage, errors={**errors, "other_error": f"calculate_output gave {reward}"})
        return Score(reward, rewards, scores, usage, errors=errors)

    def close(self) -> None:
        for grader in self.graders.values():
            grader.close()


def _sum_usage(usages: list[dict | None]) -> dict[str, int] | None:
    present = [u for u in usages if u]
    if not present:
        return None
    total: dict[str, int] = {}
    for usage in present:
        for key, value in usage.items():
            if isinstance(value, int):
                total[key] = total.get(key, 0) + value
    return total
