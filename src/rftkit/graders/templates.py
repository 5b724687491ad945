"""Template variables in grader specs: `{{ sample.output_text }}`, `{{ item.answer }}`, ...

- `{{ sample.output_text }}`: the completion's text; `{{ sample.output_json.a.b }}`: a field of
  the completion parsed as JSON; `{{ sample.output_tools }}`: its tool calls (as JSON); for a
  multi-turn episode, `{{ sample.messages }}` (the whole conversation, as JSON) and
  `{{ sample.stop_reason }}`.
- `{{ item.field.nested }}`: a field of the dataset row (list elements by index: `item.xs.0`).

A variable that does not resolve is an `invalid_variable_error` for that sample (reward 0),
never a crash. `item_fields` tells data validation which row fields a grader reads.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rftkit.graders.base import GraderFailure
from rftkit.types import Sample

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][\w]*(?:\.[\w]+)*)\s*\}\}")


def template_variables(spec: Any) -> set[str]:
    """Every `{{ dotted.name }}` in any string of a (nested) grader spec.

    >>> sorted(template_variables({"input": "{{ sample.output_text }}", "reference": "{{item.answer}}"}))
    ['item.answer', 'sample.output_text']
    """
    if isinstance(spec, str):
        return set(VARIABLE.findall(spec))
    if isinstance(spec, dict):
        return set().union(*(template_variables(v) for v in spec.values())) if spec else set()
    if isinstance(spec, list):
        return set().union(*(template_variables(v) for v in spec)) if spec else set()
    return set()


def item_fields(spec: Any) -> set[str]:
    """The dataset fields a grader reads, as dotted paths below `item`.

    >>> item_fields({"reference": "{{ item.meta.answer }}", "input": "{{ sample.output_text }}"})
    {'meta.answer'}
    """
    return {name.removeprefix("item.") for name in template_variables(spec) if name.startswith("item.")}


def sample_namespace(sample: Sample) -> dict[str, Any]:
    """What `{{ sample.* }}` can reach. `output_json` is parsed on first use only."""
    return {"output_text": sample.output_text, "output_tools": sample.output_tools,
            "messages": sample.messages, "stop_reason": sample.stop_reason}


def lookup(name: str, sample: Sample, item: dict) -> Any:
    """The value of a dotted variable, or GraderFailure naming what is missing.

    >>> lookup("item.meta.gold", Sample("x"), {"meta": {"gold": 7}})
    7
    >>> lookup("sample.output_json.a", Sample('{"a": [1]}'), {})
    [1]
    """
    root, *path = name.split(".")
    if root == "item":
        node: Any = item
    elif root == "sample":
        if path[:1] == ["output_json"]:
            node = sample.output_json
            if node is None:
                raise GraderFailure("sample_parse_error", "the sample's output is not valid JSON")
            path = path[1:]
        else:
            node = sample_namespace(sample)
    else:
        raise GraderFailure("invalid_variable_error", f"{{{{ {name} }}}}: variables start with sample. or item.")
    for depth, part in enumerate(path):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            reached = ".".join([root, *path[:depth]])
            raise GraderFailure("invalid_variable_error", f"{{{{ {name} }}}}: {reached} has no {part!r}")
    return node


def as_text(value: Any) -> str:
    """Strings as they are; everything else as JSON (how a number or an object is shown)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render(template: str, sample: Sample, item: dict) -> str:
    """Fill every `{{ variable }}` of a template.

    >>> render("{{ item.a }} vs {{sample.output_text}}", Sample("out"), {"a": 1})
    '1 vs out'
    """
    return VARIABLE.sub(lambda m: as_text(lookup(m.group(1), sample, item)), template)
