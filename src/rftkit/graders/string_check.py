"""`string_check`: compare two rendered templates (OpenAI's grader, field for field).

eq / ne: exact (in)equality; like: the reference occurs in the input, case-sensitive;
ilike: the same, ignoring case. Reward 1.0 or 0.0.
"""

from __future__ import annotations

from typing import Literal

from rftkit.graders.base import Grader, GraderSpec, register
from rftkit.graders.templates import render
from rftkit.types import Sample


class StringCheckSpec(GraderSpec):
    type: Literal["string_check"]
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


OPERATIONS = {
    "eq": lambda text, ref: text == ref,
    "ne": lambda text, ref: text != ref,
    "like": lambda text, ref: ref in text,
    "ilike": lambda text, ref: ref.lower() in text.lower(),
}


@register("string_check")
class StringCheck(Grader):
    spec_model = StringCheckSpec

    def score(self, sample: Sample, item: dict) -> float:
        text = render(self.spec.input, sample, item)
        reference = render(self.spec.reference, sample, item)
        return float(OPERATIONS[self.spec.operation](text, reference))
