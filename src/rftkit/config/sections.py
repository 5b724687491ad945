"""What every section of the job spec shares: frozen, no unknown keys, YAML's bare `off` read
as the word, and numbers that may be "auto"."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, PlainValidator, WithJsonSchema, model_validator


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _words_yaml_read_as_false(cls, data: Any) -> Any:
        """YAML 1.1 reads a bare `off` or `no` as false: a choice field that has that word gets it back."""
        if not isinstance(data, dict) or False not in data.values():
            return data
        fixed = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if value is False and field is not None and get_origin(field.annotation) is Literal:
                fixed[name] = next((w for w in ("off", "no") if w in get_args(field.annotation)), value)
        return fixed


def _auto_number(kind: type, minimum: float, *, strict_min: bool = False):
    """A field that takes a number of `kind` (>= minimum, or > when strict) or the string "auto"."""
    name = "an integer" if kind is int else "a number"
    bound = f"> {minimum:g}" if strict_min else f">= {minimum:g}"

    def check(value: Any) -> Any:
        if value == "auto":
            return value
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (kind is int and not float(value).is_integer()):
            raise ValueError(f'expected {name} or "auto", got {value!r}')
        too_small = value <= minimum if strict_min else value < minimum
        if too_small or not math.isfinite(value):
            raise ValueError(f"must be {bound}, got {value!r}")
        return kind(value)

    schema = {"anyOf": [{"type": "integer" if kind is int else "number"}, {"const": "auto"}]}
    return Annotated[kind | Literal["auto"], PlainValidator(check), WithJsonSchema(schema)]


AutoInt = _auto_number(int, 1)
AutoFloat = _auto_number(float, 0, strict_min=True)
