"""③ Graders: turn a sample (and its dataset row) into a reward.

Importing this package registers every built-in grader type; `build_grader(spec)` makes one.
OpenAI's types: string_check, text_similarity, python, score_model, label_model, multi.
rftkit's own: sql_execution, code_tests, json_schema, endpoint, function, reward_model,
environment_reward (the reward a multi-turn episode's environment gave).
"""

from rftkit.graders import (  # noqa: F401  (importing a module registers its grader type)
    code_tests,
    endpoint,
    environment,
    function,
    json_schema,
    label_model,
    multi,
    python_grader,
    reward_model,
    score_model,
    sql_execution,
    string_check,
    text_similarity,
)
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
