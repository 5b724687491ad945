"""The job spec: one typed, frozen tree that holds every setting and every default.

The top level is the body of OpenAI's `POST /v1/fine_tuning/jobs` (`model`, `training_file`,
`validation_file`, `seed`, `suffix`, `metadata`, `method`), so a job written for OpenAI's
RFT or SFT runs here unchanged. Everything OpenAI does not expose lives in the `rftkit:`
block. Each field's default and meaning is stated here, once: `rftkit config defaults`
prints this tree and docs/config.md is generated from it.

Numbers in `hyperparameters` may be "auto"; `rftkit.resolved` turns a spec into the concrete
values the components take, once the number of training rows is known.
"""

from rftkit.config.sections import (
    AutoFloat, AutoInt, Section,
)
from rftkit.config.method import (
    Method, ReinforcementHyperparameters, ReinforcementMethod, SupervisedHyperparameters, SupervisedMethod,
)
from rftkit.config.options import (
    ALGORITHM_PRESETS, STOP_REASON_NAMES, Algorithm, AsynchronousOptions, CheckpointOptions, DynamicSampling,
    EngineOptions, EnvironmentOptions, EvalOptions, FSDPOptions, KLOptions, Lengths, LoraOptions, LossOptions,
    MonitorOptions, Optimizer, PPOOptions, RayOptions, RftkitOptions, RolloutCorrection, Sampling, UpdateOptions,
)
from rftkit.config.spec import (
    JobSpec, defaults_markdown, describe_errors, iter_fields, load_job, parse_job, read_yaml,
)

__all__ = [
    "AutoFloat", "AutoInt", "Section", "Method", "ReinforcementHyperparameters", "ReinforcementMethod",
    "SupervisedHyperparameters", "SupervisedMethod", "ALGORITHM_PRESETS", "STOP_REASON_NAMES", "Algorithm",
    "AsynchronousOptions", "CheckpointOptions", "DynamicSampling", "EngineOptions", "EnvironmentOptions",
    "EvalOptions", "FSDPOptions", "KLOptions", "Lengths", "LoraOptions", "LossOptions", "MonitorOptions",
    "Optimizer", "PPOOptions", "RayOptions", "RftkitOptions", "RolloutCorrection", "Sampling", "UpdateOptions",
    "JobSpec", "defaults_markdown", "describe_errors", "iter_fields", "load_job", "parse_job", "read_yaml",
]
