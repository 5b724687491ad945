"""Template variables in grader specs: `{{ sample.output_text }}`, `{{ item.answer }}`, ...

Here: finding which dataset fields a grader reads, so that data validation can name the
rows that lack them before a job starts.
"""

from __future__ import annotations

import re
from typing import Any

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
