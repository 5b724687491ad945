"""③ Graders: turn a sample (and its dataset row) into a reward.

Importing this package registers every built-in grader type; `build_grader(spec)` makes one.
"""

from rftkit.graders import string_check  # noqa: F401  (registers the grader types)
from rftkit.graders.base import (
    ERROR_KINDS,
    REGISTRY,
    Grader,
    GraderContext,
    GraderFailure,
    GraderSpec,
    Score,
    build_grader,
    parse_spec,
    register,
)
from rftkit.graders.batch import BatchGrades, grade_batch

__all__ = [
    "ERROR_KINDS",
    "REGISTRY",
    "BatchGrades",
    "Grader",
    "GraderContext",
    "GraderFailure",
    "GraderSpec",
    "Score",
    "build_grader",
    "grade_batch",
    "parse_spec",
    "register",
]
