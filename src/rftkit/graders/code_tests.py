"""`code_tests`: run the sample's Python code against test cases in the sandbox; the reward
is the fraction that pass.

    {"type": "code_tests", "name": "unit tests", "tests": "{{ item.tests }}", "time_limit_seconds": 2}

`tests` is a list written in the spec, or a `{{ item.FIELD }}` naming a list (or a JSON
string of one) in each row. A test case is either a program run —
`{"stdin": "1 2\\n", "expected_stdout": "3\\n"}` — or an assertion run after the code —
`{"assert": "assert add(1, 2) == 3"}` (sandbox/tests_runner.py says how each is judged).
The code is taken from the last ```python block of the output, or the whole output.
Each test case runs in a fresh interpreter with `time_limit_seconds` of CPU and wall time; it
never holds the expected outputs, and the sandbox worker outside it decides the verdict
(docs/security.md says how, and what that does not defend).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rftkit.graders.base import Grader, GraderFailure, GraderSpec, Score, register
from rftkit.graders.sandbox import SandboxPool
from rftkit.graders.templates import VARIABLE, lookup, render
from rftkit.types import Grade, Sample

CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


class CodeTest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    stdin: str | None = None
    expected_stdout: str | None = None
    # `assert` is a Python keyword: the field is `assertion` in code, "assert" in JSON.
    assertion: str | None = Field(None, alias="assert")

    @model_validator(mode="after")
    def _one_kind(self) -> "CodeTest":
        if (self.assertion is None) == (self.expected_stdout is None):
            raise ValueError('a test case has either "assert" or "expected_stdout" (with optional "stdin")')
        return self

    def wire(self) -> dict:
        return self.model_dump(by_alias=True, exclude_none=True)


class CodeTestsSpec(GraderSpec):
    type: Literal["code_tests"]
    input: str = "{{ sample.output_text }}"
    tests: list[CodeTest] | str
    language: Literal["python"] = "python"
    time_limit_seconds: float = Field(2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _tests_template(self) -> "CodeTestsSpec":
        if isinstance(self.tests, str) and not VARIABLE.fullmatch(self.tests.strip()):
            raise ValueError("tests: a list of test cases, or one variable such as {{ item.tests }}")
        return self


def extract_code(text: str) -> str:
    """
    >>> extract_code("Try:\\n```python\\nprint(1)\\n```")
    'print(1)\\n'
    """
    blocks = CODE_BLOCK.findall(text)
    return blocks[-1] if blocks else text


@register("code_tests")
class CodeTests(Grader):
    spec_model = CodeTestsSpec

    def __init__(self, spec: CodeTestsSpec, context):
        super().__init__(spec, context)
        self._pool: SandboxPool | None = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> SandboxPool:
        with self._lock:
            if self._pool is None:
                self._pool = SandboxPool(self.context.sandbox)
            return self._pool

    def tests_for(self, sample: Sample, item: dict) -> list[dict]:
        if not isinstance(self.spec.tests, str):
            return [t.wire() for t in self.spec.tests]
        value = lookup(VARIABLE.fullmatch(self.spec.tests.strip()).group(1), sample, item)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise GraderFailure("invalid_variable_error", f"{self.spec.tests} is a string but not JSON") from None
        if not isinstance(value, list) or not value:
            raise GraderFailure("invalid_variable_error", f"{self.spec.tests} is not a non-empty list of test cases")
        try:
            return [CodeTest.model_validate(t).wire() for t in value]
        except ValueError as err:
            raise GraderFailure("invalid_variable_error", f"{self.spec.tests}: {err}") from None

    def task(self, sample: Sample, item: dict) -> dict:
        tests = self.tests_for(sample, item)
        limit = self.spec.time_limit_seconds
        return {"op": "tests", "code": extract_code(render(self.spec.input, sample, item)), "tests": tests,
                "time_limit": limit, "deadline": (limit + 1) * len(tests) + 5}  # + 1: each case's interpreter start

    def score(self, sample: Sample, item: dict) -> Score:
        return self.read(self.pool.run([self.task(sample, item)])[0])

    @staticmethod
    def read(reply: dict) -> Score:
        if not reply.get("ok"):
            raise GraderFailure(reply.get("kind", "python_grader_server_error"), reply.get("details", ""))
        value = reply["value"]
        return Score(reward=value["passed"] / value["total"],
                     scores={"passed": value["passed"], "total": value["total"], "results": value["results"]})

    def grade(self, sample: Sample, item: dict) -> Grade:
        return self.grade_many([sample], [item])[0]

    def grade_many(self, samples: list[Sample], items: list[dict]) -> list[Grade]:
        tasks: list[dict | GraderFailure] = []
        for sample, item in zip(samples, items):
            try:
                tasks.append(self.task(sample, item))
            except GraderFailure as failure:
                tasks.append(failure)
        runnable = [t for t in tasks if isinstance(t, dict)]
        replies = iter(self.pool.run(runnable) if runnable else [])
        grades = []
        for task in tasks:
            reply = next(replies) if isinstance(task, dict) else None
            try:
                if reply is None:
                    raise task
                score = self.read(reply)
            except GraderFailure as failure:
                score = Score(reward=0.0, errors={failure.kind: failure.details})
            grades.append(self._grade_from(score, reply.get("seconds", 0.0) if reply else 0.0))
        return grades

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
