"""OpenAI's `method` block: the type of fine-tuning and its hyperparameters, as OpenAI's API
spells them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from rftkit.config.sections import AutoFloat, AutoInt, Section


class ReinforcementHyperparameters(Section):
    n_epochs: AutoInt = Field(
        "auto",
        description="Passes over the training prompts. auto: enough passes for about "
        "rftkit.auto_steps steps (at least 1, at most 100).",
    )
    batch_size: AutoInt = Field(
        "auto", description="Prompts per step (each sampled group_size times). auto: min(8, rows)."
    )
    learning_rate_multiplier: AutoFloat = Field(
        "auto", description="Multiplies rftkit.learning_rate (its auto rate fits the model). auto: 1.0."
    )
    compute_multiplier: AutoFloat = Field(
        "auto",
        description="Scales exploration: samples per prompt = round(group_size x this), at least 2. "
        "auto: 1.0.",
    )
    eval_interval: AutoInt = Field(
        "auto", description="Steps between validation passes. auto: about 10 passes per run."
    )
    eval_samples: AutoInt = Field(
        "auto", description="Samples per validation prompt in each validation pass. auto: enough for about 64 "
        "graded samples a pass (1 for 64 or more validation prompts, at most 8)."
    )
    reasoning_effort: Literal["default", "low", "medium", "high"] = Field(
        "default",
        description="Passed to the chat template of reasoning models that read it; ignored otherwise.",
    )


class ReinforcementMethod(Section):
    grader: dict[str, Any] | None = Field(
        None, description="The grader spec (OpenAI's string_check, text_similarity, python, score_model, "
        "label_model, multi, or rftkit's own graders). Required, unless rftkit.environment names an "
        "environment whose reward() gives the reward."
    )
    hyperparameters: ReinforcementHyperparameters = ReinforcementHyperparameters()
    response_format: dict[str, Any] | None = Field(
        None,
        description="OpenAI's structured-output format. Only {type: text} (or null) is accepted: rftkit does not "
        "constrain sampling; reward structure with a json_schema grader instead.",
    )

    @model_validator(mode="after")
    def _response_format_is_text(self) -> "ReinforcementMethod":
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            raise ValueError(
                f"response_format: type {kind!r} is not enforced by rftkit (sampling is not constrained); "
                "remove it and reward the format instead with a json_schema grader, "
                '{"type": "json_schema", "name": "format", "schema": <response_format.json_schema.schema>}, '
                "alone or inside a multi grader (docs/graders.md)"
            )
        return self


class SupervisedHyperparameters(Section):
    n_epochs: AutoInt = Field(
        "auto",
        description="Passes over the training rows. auto: 3, raised for small sets so that a run "
        "has about rftkit.auto_steps steps (at most 50).",
    )
    batch_size: AutoInt = Field("auto", description="Rows per step. auto: min(16, rows).")
    learning_rate_multiplier: AutoFloat = Field(
        "auto", description="Multiplies rftkit.learning_rate (its auto rate fits the model). auto: 1.0."
    )


class SupervisedMethod(Section):
    hyperparameters: SupervisedHyperparameters = SupervisedHyperparameters()


class Method(Section):
    type: Literal["reinforcement", "supervised"] = Field(
        description="reinforcement: learn from a grader's rewards; supervised: learn the final "
        "assistant turn of each row."
    )
    reinforcement: ReinforcementMethod | None = None
    supervised: SupervisedMethod | None = None

    @model_validator(mode="after")
    def _block_matches_type(self) -> "Method":
        if self.type == "reinforcement" and self.reinforcement is None:
            raise ValueError("type is reinforcement, so method.reinforcement (with a grader) is required")
        if self.type == "supervised" and self.reinforcement is not None:
            raise ValueError("type is supervised, so method.reinforcement must be left out")
        if self.type == "reinforcement" and self.supervised is not None:
            raise ValueError("type is reinforcement, so method.supervised must be left out")
        return self
