"""A job spec resolved, once, into the values the components take.

`config.JobSpec` is what a user writes, with "auto" numbers and algorithm presets left open.
`resolve_reinforcement` closes them once the number of training rows and the model's size are
known (`auto_learning_rate` is the rule for the rate, docs/auto.md) and returns one
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
    fsdp: bool = False  # rftkit.fsdp.enabled: shard the training state over the data-parallel ranks
    fsdp_mixed_precision: str = "auto"  # rftkit.fsdp.mixed_precision: bf16 compute over fp32 master shards
    precision: str = "auto"  # rftkit.precision: bf16-pure steps narrow weights in place, else through fp32 masters
    # extra chat-template variables for every prompt (training, validation, baseline)
    chat_template_vars: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # why each "auto" value is what it is

    def explain(self) -> dict:
        """Every value as plain data, for `rftkit config explain`."""
        return _plain(self)


@dataclass(frozen=True)
class ResolvedSupervised:
    n_epochs: int
    batch_size: int
    learning_rate: float
    total_steps: int
    reasons: dict[str, str] = field(default_factory=dict)

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


# The auto learning rate, justified in docs/auto.md (`bench/auto_defaults.py sweep` and
# examples/sample_efficiency measure it). Reinforcement with every weight trained: 3e-5 at 1.1M
# parameters (the tiny preset: the largest rate of the sweep that did not lower held-out reward
# from a warm start on either preset; 1e-4 did on both, 3e-4 collapsed both), falling as
# N^-0.45: 1.4e-5 at the small preset (6M), 1.9e-6 at 0.5B, 1.2e-6 at 1.5B, and the 1e-6 of
# published GRPO recipes for 3-70B models from there on (the floor). Supervised steps take 10x
# that, down to the 1e-5 of SFT recipes for 7B models (on 12 labelled rows from a warm start,
# 3e-4 gained held-out pass@1 on the tiny preset; 1e-3 and 3e-3 broke the model). An adapter
# takes ~10x its full fine-tune's rate ("LoRA Without Regret", Thinking Machines 2025).
ANCHOR_PARAMETERS, RATE_EXPONENT = 1.1e6, 0.45
CURVES = {"reinforcement": (3e-5, 1e-6), "supervised": (3e-4, 1e-5)}  # (rate at the anchor, floor)
LORA_FACTOR = 10.0


def auto_learning_rate(parameters: int | None, *, lora: bool, supervised: bool) -> tuple[float, str]:
    """(rate, why) for a model of `parameters` distinct parameters (None: its size is not known here).

    >>> [auto_learning_rate(n, lora=False, supervised=False)[0] for n in (1_100_000, 6_000_000, 494_000_000)]
    [3e-05, 1.4e-05, 1.9e-06]
    >>> auto_learning_rate(7_600_000_000, lora=True, supervised=False)[0]
    1e-05
    """
    method = "supervised" if supervised else "reinforcement"
    anchor_rate, low = CURVES[method]
    if parameters is None:
        rate, why = low, f"the model's size could not be read here, so the {method} rate of a large model"
    else:
        rate = min(anchor_rate, max(low, anchor_rate * (ANCHOR_PARAMETERS / parameters) ** RATE_EXPONENT))
        why = (f"{parameters / 1e6:,.1f}M parameters: {method} {anchor_rate:g} x (1.1M / N)^{RATE_EXPONENT:g}, "
               f"within [{low:g}, {anchor_rate:g}]")
    if lora:
        rate, why = rate * LORA_FACTOR, why + ", x10 for a LoRA adapter"
    return float(f"{rate:.2g}"), why  # two significant digits: the rule is not more precise


def _learning_rate(spec: JobSpec, hp, parameters: int | None, supervised: bool, reasons: dict) -> float:
    base = spec.rftkit.learning_rate
    if base == "auto":
        base, reasons["learning_rate"] = auto_learning_rate(parameters, lora=spec.rftkit.lora.enabled,
                                                            supervised=supervised)
    multiplier = _pick(hp.learning_rate_multiplier, 1.0)
    if multiplier != 1.0 and "learning_rate" in reasons:
        reasons["learning_rate"] += f"; x{multiplier:g} (learning_rate_multiplier)"
    return base * multiplier


def _auto_eval_samples(valid_rows: int) -> int:
    """Samples per validation prompt for about 64 graded samples a pass, within [1, 8]."""
    return max(1, min(8, math.ceil(64 / valid_rows))) if valid_rows else 1


def _auto_epochs(rows: int, batch_size: int, target_steps: int, floor: int, ceiling: int) -> int:
    steps_per_epoch = math.ceil(rows / batch_size)
    return max(floor, min(ceiling, math.ceil(target_steps / steps_per_epoch)))


def _plan(hp, opts: RftkitOptions, rows: int, reasons: dict, *, batch: int,
          epochs: tuple[int, int]) -> tuple[int, int, int]:
    """(batch size, epochs, total steps) from the hyperparameters `hp` (batch_size, n_epochs may be
    "auto": at most `batch` rows a step; enough epochs for about auto_steps steps, within `epochs`)."""
    if rows < 1:
        raise RftkitError("the training file has no usable rows", fix="run `rftkit data validate` on it")
    batch_size = min(_pick(hp.batch_size, min(batch, rows)), rows)
    if hp.batch_size == "auto":
        reasons["batch_size"] = f"min({batch}, {rows} training rows)"
    n_epochs = _pick(hp.n_epochs, _auto_epochs(rows, batch_size, opts.auto_steps, *epochs))
    if hp.n_epochs == "auto":
        reasons["n_epochs"] = (f"about rftkit.auto_steps={opts.auto_steps} steps of {math.ceil(rows / batch_size)} a "
                               f"pass, within [{epochs[0]}, {epochs[1]}] passes")
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


def resolve_reinforcement(spec: JobSpec, rows: int, *, parameters: int | None,
                          valid_rows: int = 0) -> ResolvedReinforcement:
    """Concrete settings for a reinforcement job over `rows` training prompts (and `valid_rows`
    validation prompts) on a model of `parameters` distinct parameters (None: not known here)."""
    hp = spec.method.reinforcement.hyperparameters
    opts = spec.rftkit
    if opts.sampling.temperature <= 0:
        raise RftkitError("rftkit.sampling.temperature: must be > 0 for reinforcement",
                          fix="RL learns from differences between samples; use 1.0")
    reasons: dict[str, str] = {}
    batch_size, n_epochs, total = _plan(hp, opts, rows, reasons, batch=8, epochs=(1, 100))
    algorithm = resolve_algorithm(opts)
    learning_rate = _learning_rate(spec, hp, parameters, False, reasons)
    if hp.eval_interval == "auto":
        reasons["eval_interval"] = f"about 10 validation passes over {total} steps"
    if hp.eval_samples == "auto":
        reasons["eval_samples"] = (f"about 64 graded samples a pass over {valid_rows} validation prompts, at most 8"
                                   if valid_rows else "no validation prompts")
    if hp.compute_multiplier == "auto":
        reasons["group_size"] = f"rftkit.group_size={opts.group_size} x compute_multiplier 1.0"
    return ResolvedReinforcement(
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        group_size=max(2, round(opts.group_size * _pick(hp.compute_multiplier, 1.0))),
        eval_interval=_pick(hp.eval_interval, max(1, total // 10)),
        eval_samples=_pick(hp.eval_samples, _auto_eval_samples(valid_rows)),
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
        fsdp=opts.fsdp.enabled,
        fsdp_mixed_precision=opts.fsdp.mixed_precision,
        precision=opts.precision,
        chat_template_vars=reasoning_template_vars(hp.reasoning_effort),
        reasons=reasons,
    )


def resolve_supervised(spec: JobSpec, rows: int, *, parameters: int | None) -> ResolvedSupervised:
    """Concrete hyperparameters for a supervised job over `rows` training rows on a model of
    `parameters` distinct parameters (None: not known here)."""
    hp = (spec.method.supervised or SupervisedMethod()).hyperparameters
    reasons: dict[str, str] = {}
    batch_size, n_epochs, total = _plan(hp, spec.rftkit, rows, reasons, batch=16, epochs=(3, 50))
    return ResolvedSupervised(
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate=_learning_rate(spec, hp, parameters, True, reasons),
        total_steps=total,
        reasons=reasons,
    )
