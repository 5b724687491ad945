"""`score_model`: an LLM judge gives a number in `range` (OpenAI's grader, field for field).

    {"type": "score_model", "name": "helpful", "model": "judge", "range": [0, 10],
     "input": [{"role": "user", "content": "Rate 0-10: {{ sample.output_text }}"}]}

The judge is asked for `{"steps": [...], "result": number}`; replies are read robustly
(judges.parse_number: JSON anywhere in the reply, `Score: 7`, or a lone number). The reward
is the result itself, as in OpenAI's RFT; a result outside `range` is a
`model_grader_parse_error`, reward 0.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from rftkit.graders.base import GraderFailure, Score, register
from rftkit.graders.judges import JudgeSpec, ModelJudge, SamplingParams, parse_number


class ScoreModelSpec(JudgeSpec):
    type: Literal["score_model"]
    range: list[float] | None = None
    sampling_params: SamplingParams | None = None

    @field_validator("range")
    @classmethod
    def _two_ordered(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (len(value) != 2 or value[0] >= value[1]):
            raise ValueError("range is [low, high] with low < high, e.g. [0, 1]")
        return value


@register("score_model")
class ScoreModel(ModelJudge):
    spec_model = ScoreModelSpec

    @property
    def bounds(self) -> tuple[float, float]:
        low, high = self.spec.range or (0.0, 1.0)
        return float(low), float(high)

    def instructions(self) -> str:
        low, high = self.bounds
        return (f"Grade the output. Reply with only a JSON object: "
                f'{{"steps": ["<your reasoning, briefly>"], "result": <a number from {low:g} to {high:g}>}}')

    def read_reply(self, text: str) -> Score:
        value, found = parse_number(text)
        low, high = self.bounds
        if not low <= value <= high:
            raise GraderFailure("model_grader_parse_error", f"the score {value:g} is outside the range [{low:g}, {high:g}]")
        scores = {"result": value, **({"steps": found["steps"]} if "steps" in found else {})}
        return Score(reward=value, scores=scores)
