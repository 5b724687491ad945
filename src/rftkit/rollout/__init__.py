"""② Rollout: engines turn prompt token ids into sampled completions (`engine.py`)."""

from rftkit.rollout.engine import (
    ENGINES,
    Completion,
    Engine,
    EngineContext,
    EngineUnavailable,
    build_engine,
    job_engine,
    local_engine,
    register_engine,
)
from rftkit.types import SamplingParams

__all__ = ["ENGINES", "Completion", "Engine", "EngineContext", "EngineUnavailable", "SamplingParams",
           "build_engine", "job_engine", "local_engine", "register_engine"]
