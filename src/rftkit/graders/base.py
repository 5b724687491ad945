"""What every grader shares: its spec, the registry, and turning a score into a `Grade`.

A grader is a small object built from a JSON spec (OpenAI's shapes, field for field):

    grader = build_grader({"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
                           "reference": "{{ item.answer }}", "operation": "eq"})
    grade = grader.grade(sample, item)      # Grade(reward, sub_rewards, metadata)

Subclasses implement `score(sample, item)`; `grade` adds what users and training rely on:
timing, the metadata of OpenAI's graders/run response, and the rule that a failure or a
non-finite reward becomes reward 0 with the error named — it never reaches training and
never stops a run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from rftkit.errors import RftkitError
from rftkit.graders.sandbox.limits import SandboxLimits
from rftkit.types import Grade, Sample

if TYPE_CHECKING:
    from rftkit.graders.network import NetworkPolicy

# The error kinds of OpenAI's graders/run metadata, in its order.
ERROR_KINDS = (
    "formula_parse_error",
    "invalid_variable_error",
    "model_grader_parse_error",
    "model_grader_refusal_error",
    "model_grader_server_error",
    "other_error",
    "python_grader_runtime_error",
    "python_grader_server_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
)


class GraderFailure(Exception):
    """A sample could not be scored. `kind` is one of ERROR_KINDS; the grade's reward becomes 0."""

    def __init__(self, kind: str, details: str = ""):
        assert kind in ERROR_KINDS, kind
        self.kind, self.details = kind, details
        super().__init__(f"{kind}: {details}" if details else kind)


class GraderSpec(BaseModel):
    """Base of every grader's spec: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: str
    name: str = ""


@dataclass(frozen=True)
class GraderContext:
    """What graders need that is not part of a spec: where relative paths start, how to reach
    an LLM judge, sandbox limits. Filled from the CLI, the job or the server."""

    base_dir: Path = field(default_factory=Path.cwd)
    judge_base_url: str | None = None  # else $RFTKIT_JUDGE_BASE_URL, else $OPENAI_BASE_URL
    judge_api_key: str | None = None  # else $RFTKIT_JUDGE_API_KEY, else $OPENAI_API_KEY
    options: dict[str, Any] = field(default_factory=dict)
    judge_timeout_seconds: float = 60.0  # one HTTP request to a judge or a reward endpoint
    judge_max_retries: int = 3  # after the first try; with exponential backoff
    judge_backoff_seconds: float = 0.5  # the first pause; doubled each retry, with jitter
    http_concurrency: int = 16  # requests in flight per grader during a batch
    embedding_model: str | None = None  # a local model directory for cosine; else $RFTKIT_EMBEDDING_MODEL
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    network: NetworkPolicy | None = None  # None: any host (the user's own commands); set over the API (network.py)


@dataclass
class Score:
    """What `Grader.score` may return instead of a bare float."""

    reward: float
    sub_rewards: dict[str, float] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    token_usage: dict[str, int] | None = None
    sampled_model_name: str | None = None
    errors: dict[str, str] = field(default_factory=dict)  # kind -> details, for failures inside (multi)


def no_errors() -> dict[str, Any]:
    return {kind: False for kind in ERROR_KINDS}


def finite_reward(value: Any, kind: str = "other_error") -> float:
    """`value` as a finite float, or GraderFailure(kind) saying what it was.

    >>> finite_reward(1)
    1.0
    >>> finite_reward(float("nan"))
    Traceback (most recent call last):
    ...
    rftkit.graders.base.GraderFailure: other_error: the reward is nan, not a finite number
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GraderFailure(kind, f"the reward is {value!r} ({type(value).__name__}), not a number")
    value = float(value)
    if not math.isfinite(value):
        raise GraderFailure(kind, f"the reward is {value}, not a finite number")
    return value


class Grader:
    """A grader built from a spec. Subclasses set `spec_model` and implement `score`."""

    spec_model: ClassVar[type[GraderSpec]] = GraderSpec

    def __init__(self, spec: GraderSpec, context: GraderContext):
        self.spec, self.context = spec, context

    @property
    def name(self) -> str:
        return self.spec.name or self.spec.type

    @property
    def type(self) -> str:
        return self.spec.type

    def score(self, sample: Sample, item: dict) -> float | Score:
        raise NotImplementedError

    def problems(self) -> list[str]:
        """What `rftkit graders validate` finds wrong beyond the schema (formula, source, files).
        Each is one line that names the field; an empty list means ready to grade."""
        return []

    def grade(self, sample: Sample, item: dict) -> Grade:
        """Score one sample; failures become reward 0 with the error named."""
        start = time.perf_counter()
        try:
            result = self.score(sample, item)
            score = result if isinstance(result, Score) else Score(reward=result)
            score.reward = finite_reward(score.reward)
        except GraderFailure as failure:
            score = Score(reward=0.0, errors={failure.kind: failure.details})
        except Exception as err:  # a grader bug must not stop training: record it, reward 0
            score = Score(reward=0.0, errors={"other_error": f"{type(err).__name__}: {err}"})
        return self._grade_from(score, time.perf_counter() - start)

    def grade_many(self, samples: list[Sample], items: list[dict]) -> list[Grade]:
        """Grade many samples, in order. Graders that can batch or run concurrently override this."""
        return [self.grade(s, i) for s, i in zip(samples, items)]

    def _grade_from(self, score: Score, seconds: float) -> Grade:
        errors = no_errors()
        for kind, details in score.errors.items():
            errors[kind] = True
            errors[f"{kind}_details"] = details
        metadata = {
            "name": self.name,
            "type": self.type,
            "errors": errors,
            "execution_time": seconds,
            "scores": score.scores,
            "token_usage": score.token_usage,
            "sampled_model_name": score.sampled_model_name,
        }
        return Grade(reward=score.reward, sub_rewards=dict(score.sub_rewards), metadata=metadata)

    def close(self) -> None:
        """Release what the grader holds (worker pools, connections)."""

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


REGISTRY: dict[str, type[Grader]] = {}


def register(type_name: str):
    """Class decorator: make a grader reachable by its spec's `type`."""

    def add(cls: type[Grader]) -> type[Grader]:
        REGISTRY[type_name] = cls
        return cls

    return add


def grader_class(data: Any, source: str) -> type[Grader]:
    if not isinstance(data, dict):
        raise RftkitError(f"{source}: a grader must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        shown = "missing" if kind is None else repr(kind)
        raise RftkitError(f"{source}: type: unknown grader type {shown}", fix=f"use one of {known}")
    return REGISTRY[kind]


def parse_spec(data: Any, source: str = "grader") -> GraderSpec:
    """Validate a grader spec against its type's schema; errors name the full path."""
    from rftkit.config import describe_errors

    cls = grader_class(data, source)
    try:
        return cls.spec_model.model_validate(data)
    except ValidationError as err:
        raise RftkitError(describe_errors(err, source, root=cls.spec_model)) from None


def build_grader(data: Any, context: GraderContext | None = None, source: str = "grader") -> Grader:
    """A ready grader for a spec (a dict, as in a job's `method.reinforcement.grader`)."""
    spec = parse_spec(data, source)
    return REGISTRY[spec.type](spec, context or GraderContext())
