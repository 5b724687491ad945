"""`label_model`: an LLM judge picks one of `labels`; reward 1 when it is one of
`passing_labels`, else 0 (OpenAI's grader, field for field).

    {"type": "label_model", "name": "tone", "model": "judge", "labels": ["polite", "rude"],
     "passing_labels": ["polite"], "input": [{"role": "user", "content": "{{ sample.output_text }}"}]}

The judge is asked for `{"label": "..."}`; a reply that is just a label, or that names
exactly one label, is read too. Anything else is a `model_grader_parse_error`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import model_validator

from rftkit.graders.base import GraderFailure, Score, register
from rftkit.graders.judges import JudgeSpec, ModelJudge, find_json_object


class LabelModelSpec(JudgeSpec):
    type: Literal["label_model"]
    labels: list[str]
    passing_labels: list[str]

    @model_validator(mode="after")
    def _passing_are_labels(self) -> "LabelModelSpec":
        if not self.labels:
            raise ValueError("labels: give at least one label")
        unknown = [p for p in self.passing_labels if p not in self.labels]
        if unknown:
            raise ValueError(f"passing_labels: {unknown} are not among labels {self.labels}")
        return self


def read_label(text: str, labels: list[str]) -> str:
    """The label a judge chose.

    >>> read_label('{"label": "rude"}', ["polite", "rude"])
    'rude'
    >>> read_label("Polite.", ["polite", "rude"])
    'polite'
    """
    found = find_json_object(text)
    if found is not None:
        for key in ("label", "result"):
            if isinstance(found.get(key), str):
                return _match(found[key].strip(), labels, text)
    return _match(text.strip().strip(".\"'`"), labels, text)


def _match(answer: str, labels: list[str], text: str) -> str:
    for label in labels:
        if answer.lower() == label.lower():
            return label
    named = [label for label in labels if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", answer, re.IGNORECASE)]
    if len(named) == 1:
        return named[0]
    raise GraderFailure("model_grader_parse_error", f"no single label of {labels} in the judge's reply: {text[:200]!r}")


@register("label_model")
class LabelModel(ModelJudge):
    spec_model = LabelModelSpec

    def instructions(self) -> str:
        options = ", ".join(f'"{label}"' for label in self.spec.labels)
        return f'Classify the output. Reply with only a JSON object: {{"label": <one of {options}>}}'

    def read_reply(self, text: str) -> Score:
        label = read_label(text, self.spec.labels)
        passed = label in self.spec.passing_labels
        return Score(reward=float(passed), scores={"label": label, "passed": passed})
