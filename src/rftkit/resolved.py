"""A job spec resolved, once, into the values the components take.

`config.JobSpec` is what a user writes, with "auto" numbers and algorithm presets left open.
`resolve_reinforcement` closes them once the number of training rows is known and returns one
frozen object, `ResolvedReinforcement`, made of sections: the trainer reads its sizes, the
rollout its `sampling`, the update its `update`, the advantage phase its `algorithm`, `kl` and
`ppo`. Nothing downstream reads the spec again or copies its fields into a settings class of
its own.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from rftkit.config import (
    ALGORITHM_PRESETS,
    JobSpec,
    KLOptions,
    Optimizer,
    PPOOptions,
    RftkitOptions,
    RolloutCorrection,
    SupervisedMethod,
)
from rftkit.data.chat import reasoning_template_vars
from rftkit.errors import RftkitError
from rftkit.types import SamplingParams


@dataclass(frozen=True)
class ResolvedAlgorithm:
    """The algorithm's preset with every explicit `rftkit.loss` / `dynamic_sampling` key applied."""

    advantage: str
    policy_loss: str
    aggregation: str
    clip_low: float
    clip_high: float
    dynamic_sampling: bool
    sampling_rounds: int = 1  # with dynamic sampling: rounds per step to refill dropped groups

    @property
    def uses_critic(self) -> bool:
        return self.advantage == "gae"


@dataclass(frozen=True)
class UpdateSettings:
    """What the policy (and critic) update reads: `train/update.py`."""

    epochs: int
    mini_batches: int
    micro_batch_tokens: int
    algorithm: ResolvedAlgorithm
    temperature: float
    max_completion_tokens: int
    kl_coef: float  # in the loss; 0 when KL is placed in the reward
    kl_estimator: str
    entropy_coef: float
    max_grad_norm: float
    value_coef: float
    value_clip: float | None

    @property
    def on_policy(self) -> bool:
        """One optimizer step per sampled batch: the sampling policy is the current one."""
        return self.epochs == 1 and self.mini_batches == 1


@dataclass(frozen=True)
class ResolvedReinforcement:
    n_epochs: int
    batch_size: int
    learning_rate: float
    group_size: int
    eval_interval: int
    eval_samples: int
    total_steps: int
    seed: int
    pass_threshold: float
    sampling: SamplingParams
    algorithm: ResolvedAlgorithm
    update: UpdateSettings
    kl: KLOptions
    ppo: PPOOptions
    optimizer: Optimizer
    rollout_correction: RolloutCorrection
    max_staleness: int = 0  # rftkit.asynchronous: 0 synchronous, 1 one step off-policy
    # extra chat-template variables for every prompt (training, validation, baseline)
    chat_template_vars: dict[str, Any] = field(default_factory=dict)

    def explain(self) -> dict:
        """Every value as plain data, for `rftkit config explain`."""
        return _plain(self)


@dataclass(frozen=True)
class ResolvedSupervised:
    n_epochs: int
    batch_size: int
    learning_rate: float
    total_steps: int

    def explain(self) -> dict:
        return _plain(self)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return list(value)
    return value


def _pick(value: Any, auto: Any) -> Any:
    return auto if value == "auto" else value


def _auto_epochs(rows: int, batch_size: int, target_steps: int, floor: int, ceiling: int) -> int:
    steps_per_epoch = math.ceil(rows / batch_size)
    return max(floor, min(ceiling, math.ceil(target_steps / steps_per_epoch)))


def _plan(hp, opts: RftkitOptions, rows: int, *, batch: int, epochs: tuple[int, int]) -> tuple[int, int, int]:
    """(batch size, epochs, total steps) from the hyperparameters `hp` (batch_size, n_epochs may be
    "auto": at most `batch` rows a step; enough epochs for about auto_steps steps, within `epochs`)."""
    if rows < 1:
        raise RftkitError("the training file has no usable rows", fix="run `rftkit data validate` on it")
    batch_size = min(_pick(hp.batch_size, min(batch, rows)), rows)
    n_epochs = _pick(hp.n_epochs, _auto_epochs(rows, batch_size, opts.auto_steps, *epochs))
    total = n_epochs * math.ceil(rows / batch_size)
    if opts.max_steps is not None:
        total = min(total, opts.max_steps)
    return batch_size, n_epochs, total


def resolve_algorithm(options: RftkitOptions) -> ResolvedAlgorithm:
    """The algorithm's preset, with every explicitly set `rftkit.loss` / dynamic_sampling key applied."""
    preset = dict(ALGORITHM_PRESETS[options.algorithm])
    overrides = {k: v for k, v in options.loss.model_dump().items() if v is not None and k in preset}
    if options.dynamic_sampling.enabled is not None:
        overrides["dynamic_sampling"] = options.dynamic_sampling.enabled
    preset.update(overrides)
    if (preset["advantage"] == "gae") != (options.algorithm == "ppo"):
        raise RftkitError(
            "rftkit.loss.advantage: gae needs a critic, which only algorithm ppo trains",
            fix="use algorithm: ppo for gae, or a group estimator (grpo, dr_grpo, rloo, reinforce_pp) otherwise",
        )
    return ResolvedAlgorithm(**preset, sampling_rounds=options.dynamic_sampling.max_rounds)


def _update_settings(opts: RftkitOptions, algorithm: ResolvedAlgorithm) -> UpdateSettings:
    return UpdateSettings(
        epochs=opts.ppo.epochs if algorithm.uses_critic else opts.update.epochs,
        mini_batches=opts.update.mini_batches,
        micro_batch_tokens=opts.update.micro_batch_tokens,
        algorithm=algorithm,
        temperature=opts.sampling.temperature,
        max_completion_tokens=opts.lengths.max_completion_tokens,
        kl_coef=opts.kl.coef if opts.kl.placement == "loss" else 0.0,
        kl_estimator=opts.kl.estimator,
        entropy_coef=opts.loss.entropy_coef,
        max_grad_norm=opts.optimizer.max_grad_norm,
        value_coef=opts.ppo.value_coef,
        value_clip=opts.ppo.value_clip,
    )


def sampling_params(opts: RftkitOptions) -> SamplingParams:
    """How the job samples: for training rollouts, validation and pass@k."""
    return SamplingParams(opts.lengths.max_completion_tokens, opts.sampling.temperature,
                          opts.sampling.top_p, opts.sampling.top_k)


def pass_threshold(configured: float | None, grader: dict | None) -> float:
    """The reward at which a sample counts as correct: `rftkit.eval.pass_threshold` when set, else
    the grader's own `pass_threshold` (text_similarity's), else 1.0 (a binary grader's pass).

    >>> pass_threshold(None, {"type": "text_similarity", "pass_threshold": 0.6})
    0.6
    >>> pass_threshold(0.5, {"type": "text_similarity", "pass_threshold": 0.6}), pass_threshold(None, {})
    (0.5, 1.0)
    """
    if configured is not None:
        return configured
    own = (grader or {}).get("pass_threshold")  # None: an environment's reward()
    numeric = isinstance(own, (int, float)) and not isinstance(own, bool)
    return float(own) if numeric else 1.0


def resolve_reinforcement(spec: JobSpec, rows: int) -> ResolvedReinforcement:
    """Concrete settings for a reinforcement job over `rows` training prompts."""
    hp = spec.method.reinforcement.hyperparameters
    opts = spec.rftkit
    if opts.sampling.temperature <= 0:
        raise RftkitError("rftkit.sampling.temperature: must be > 0 for reinforcement",
                          fix="RL learns from differences between samples; use 1.0")
    batch_size, n_epochs, total = _plan(hp, opts, rows, batch=8, epochs=(1, 100))
    algorithm = resolve_algorithm(opts)
    return ResolvedReinforcement(
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate=opts.learning_rate * _pick(hp.learning_rate_multiplier, 1.0),
        group_size=max(2, round(opts.group_size * _pick(hp.compute_multiplier, 1.0))),
        eval_interval=_pick(hp.eval_interval, max(1, total // 10)),
        eval_samples=_pick(hp.eval_samples, 1),
        total_steps=total,
        seed=spec.seed,
        pass_threshold=pass_threshold(opts.eval.pass_threshold, spec.method.reinforcement.grader),
        sampling=sampling_params(opts),
        algorithm=algorithm,
        update=_update_settings(opts, algorithm),
        kl=opts.kl,
        ppo=opts.ppo,
        optimizer=opts.optimizer,
        rollout_correction=opts.rollout_correction,
        max_staleness=opts.asynchronous.max_staleness,
        chat_template_vars=reasoning_template_vars(hp.reasoning_effort),
    )


def resolve_supervised(spec: JobSpec, rows: int) -> ResolvedSupervised:
    """Concrete hyperparameters for a supervised job over `rows` training rows."""
    hp = (spec.method.supervised or SupervisedMethod()).hyperparameters
    opts = spec.rftkit
    batch_size, n_epochs, total = _plan(hp, opts, rows, batch=16, epochs=(3, 50))
    return ResolvedSupervised(
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate=opts.learning_rate * _pick(hp.learning_rate_multiplier, 1.0),
        total_steps=total,
    )
