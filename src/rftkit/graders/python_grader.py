"""`python`: the user's `def grade(sample, item) -> float`, run in the sandbox (OpenAI's grader).

    {"type": "python", "name": "len", "source": "def grade(sample, item):\\n    return ..."}

`sample` is a dict with output_text, output_json (None when the text is not JSON),
output_tools, finish_reason, and for multi-turn episodes messages (the whole conversation) and
stop_reason; `item` is the dataset row. The source (at most 256 kB) is
loaded once in each warm sandbox worker and every grade runs in a fresh fork of it, so one
sample cannot change what the next one sees (sandbox/worker.py). Errors are named as OpenAI
names them: python_grader_runtime_error for the code's exceptions and bad return values,
python_grader_server_error when a worker dies, unresponsive_reward_error past the time limit.
`image_tag` is accepted for compatibility and ignored: the sandbox runs rftkit's own Python.

Where the sandbox cannot run (not root, no namespaces or cgroups) grading raises
`SandboxUnavailable` with the reason: untrusted code is never run any other way.
"""

from __future__ import annotations

import ast
import threading
from typing import Literal

from pydantic import Field

from rftkit.graders.base import Grader, GraderFailure, GraderSpec, Score, finite_reward, register
from rftkit.graders.sandbox import SandboxPool
from rftkit.types import Grade, Sample

MAX_SOURCE_BYTES = 256 * 1024


class PythonSpec(GraderSpec):
    type: Literal["python"]
    source: str = Field(max_length=MAX_SOURCE_BYTES)
    image_tag: str | None = None


def source_problems(source: str, field: str = "source") -> list[str]:
    """Static checks only (the source is never run outside the sandbox): it compiles and
    defines a top-level `grade`.

    >>> source_problems("def grade(sample, item):\\n    return 1.0")
    []
    >>> source_problems("x = 1")
    ['source: defines no top-level function grade(sample, item)']
    """
    if len(source.encode()) > MAX_SOURCE_BYTES:
        return [f"{field}: {len(source.encode())} bytes, more than the limit of {MAX_SOURCE_BYTES}"]
    try:
        tree = ast.parse(source, "grader.py")
    except SyntaxError as err:
        return [f"{field}: line {err.lineno}: {err.msg}"]
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    if "grade" not in defined | assigned:
        return [f"{field}: defines no top-level function grade(sample, item)"]
    return []


def sample_dict(sample: Sample) -> dict:
    return {"output_text": sample.output_text, "output_json": sample.output_json,
            "output_tools": sample.output_tools, "finish_reason": sample.finish_reason,
            "messages": sample.messages, "stop_reason": sample.stop_reason}


def reply_score(reply: dict) -> Score:
    """A worker's reply as a Score; failures carry the kind the worker named."""
    if not reply.get("ok"):
        raise GraderFailure(reply.get("kind", "python_grader_server_error"), reply.get("details", ""))
    return Score(reward=finite_reward(reply["value"], "python_grader_runtime_error"))


@register("python")
class PythonGrader(Grader):
    spec_model = PythonSpec

    def __init__(self, spec: PythonSpec, context):
        super().__init__(spec, context)
        self._pool: SandboxPool | None = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> SandboxPool:
        with self._lock:  # started on first use: building a grader to validate it costs nothing
            if self._pool is None:
                self._pool = SandboxPool(self.context.sandbox, {"grader": self.spec.source})
            return self._pool

    def problems(self) -> list[str]:
        return source_problems(self.spec.source)

    def score(self, sample: Sample, item: dict) -> Score:
        return reply_score(self.pool.run([self.task(sample, item)])[0])

    def task(self, sample: Sample, item: dict) -> dict:
        limits = self.context.sandbox
        return {"op": "grade", "key": "grader", "sample": sample_dict(sample), "item": item,
                "wall": limits.wall_seconds, "cpu": limits.cpu_seconds}

    def grade(self, sample: Sample, item: dict) -> Grade:
        return self.grade_many([sample], [item])[0]

    def grade_many(self, samples: list[Sample], items: list[dict]) -> list[Grade]:
        replies = self.pool.run([self.task(s, i) for s, i in zip(samples, items)])
        return [self.grade_reply(reply) for reply in replies]

    def grade_reply(self, reply: dict) -> Grade:
        try:
            score = reply_score(reply)
        except GraderFailure as failure:
            score = Score(reward=0.0, errors={failure.kind: failure.details})
        return self._grade_from(score, reply.get("seconds", 0.0))

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
