"""`json_schema`: the output is JSON and matches a JSON Schema (structured-output tasks).

    {"type": "json_schema", "name": "invoice", "schema": {"type": "object", ...}, "partial_credit": true}

Reward 1.0 when the rendered input parses as JSON (a whole-output ```json fence is allowed)
and validates against `schema` (jsonschema, the draft the schema declares, 2020-12 when it
declares none). Output that is not JSON scores 0 — the model's failure, not the grader's.
With `partial_credit`, an object that does not validate earns the fraction of the schema's
top-level `properties` whose values validate (a missing required property counts as failed,
a missing optional one as passed); anything else earns 0.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field

from rftkit.errors import RftkitError
from rftkit.graders.base import Grader, GraderSpec, Score, register
from rftkit.graders.templates import render
from rftkit.types import Sample

WHOLE_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.DOTALL | re.IGNORECASE)


class JsonSchemaSpec(GraderSpec):
    type: Literal["json_schema"]
    input: str = "{{ sample.output_text }}"
    # `schema` would shadow a pydantic BaseModel method: the field is schema_, "schema" in JSON.
    schema_: dict[str, Any] = Field(alias="schema")
    partial_credit: bool = False


def parse_output(text: str) -> Any:
    fenced = WHOLE_FENCE.match(text)
    return json.loads(fenced.group(1) if fenced else text)


@register("json_schema")
class JsonSchema(Grader):
    spec_model = JsonSchemaSpec

    def __init__(self, spec: JsonSchemaSpec, context):
        super().__init__(spec, context)
        from jsonschema import exceptions, validators

        cls = validators.validator_for(spec.schema_, default=validators.Draft202012Validator)
        try:
            cls.check_schema(spec.schema_)
        except exceptions.SchemaError as err:
            raise RftkitError(f"{self.name}: schema: not a valid JSON Schema: {err.message}") from None
        self.validator = cls(spec.schema_)
        self.validator_class = cls

    def score(self, sample: Sample, item: dict) -> Score:
        try:
            value = parse_output(render(self.spec.input, sample, item))
        except ValueError as err:
            return Score(reward=0.0, scores={"valid_json": False, "error": str(err)[:200]})
        errors = sorted(self.validator.iter_errors(value), key=lambda e: list(e.path))
        if not errors:
            return Score(reward=1.0, scores={"valid_json": True, "valid": True})
        scores = {"valid_json": True, "valid": False, "errors": [e.message[:200] for e in errors[:5]]}
        reward = self.field_fraction(value) if self.spec.partial_credit else 0.0
        return Score(reward=reward, scores=scores)

    def field_fraction(self, value: Any) -> float:
        properties = self.spec.schema_.get("properties") or {}
        if not isinstance(value, dict) or not properties:
            return 0.0
        required = set(self.spec.schema_.get("required") or [])
        passed = 0
        for key, subschema in properties.items():
            if key not in value:
                passed += key not in required
            elif self.validator_class(subschema).is_valid(value[key]):
                passed += 1
        return passed / len(properties)
