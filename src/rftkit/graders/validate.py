"""Check a grader before a job spends compute on it (`rftkit graders validate`, the API's
graders/validate): the schema, every template variable, and what each type checks itself —
a multi grader's formula, a python grader's source (compiled, never run), a database file,
a judge endpoint. Nothing untrusted is executed.
"""

from __future__ import annotations

from typing import Any

from rftkit.errors import RftkitError
from rftkit.graders.base import GraderContext, build_grader, parse_spec
from rftkit.graders.templates import template_variables

SAMPLE_FIELDS = ("output_text", "output_json", "output_tools")
CODE_FIELDS = ("source",)  # program text, where `{{` is not a template


def variable_problems(spec: Any, path: str = "") -> list[str]:
    """Template variables that can never resolve, with the field that holds them.

    >>> variable_problems({"input": "{{ sample.text }}", "reference": "{{ item.answer }}"})
    ['input: {{ sample.text }}: sample has output_text, output_json and output_tools']
    """
    if isinstance(spec, dict):
        found = []
        for key, value in spec.items():
            if key not in CODE_FIELDS:
                found += variable_problems(value, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(spec, list):
        return [p for i, v in enumerate(spec) for p in variable_problems(v, f"{path}[{i}]")]
    found = []
    for name in sorted(template_variables(spec)):
        root, _, rest = name.partition(".")
        if root not in ("sample", "item"):
            found.append(f"{path}: {{{{ {name} }}}}: variables start with sample. or item.")
        elif root == "sample" and rest.split(".")[0] not in SAMPLE_FIELDS:
            found.append(f"{path}: {{{{ {name} }}}}: sample has output_text, output_json and output_tools")
        elif root == "item" and not rest:
            found.append(f"{path}: {{{{ {name} }}}}: name a field, e.g. item.answer")
    return found


def validate_grader(data: Any, context: GraderContext | None = None, source: str = "grader") -> list[str]:
    """Every problem found, one line each naming the field; [] when the grader is ready.
    A spec that does not match its schema raises RftkitError (nothing else can be checked)."""
    parse_spec(data, source)
    problems = [f"{source}: {p}" for p in variable_problems(data)]
    try:
        grader = build_grader(data, context, source)
    except RftkitError as err:
        return problems + [str(err) if str(err).startswith(source) else f"{source}: {err}"]
    with grader:
        problems += [f"{source}: {p}" for p in grader.problems()]
    return problems
