"""AdamW and the learning-rate schedule shared by supervised and RL training.

The schedule is a pure function of the step number, applied before each step, so resuming
needs no scheduler state and a step that makes no update (every group dropped) cannot put
the schedule out of step.
"""

from __future__ import annotations

import math

import torch

from rftkit.config import Optimizer

FUSED_DEVICES = {"cpu", "cuda"}


def make_optimizer(params, learning_rate: float, options: Optimizer) -> torch.optim.AdamW:
    trainable = [p for p in params if p.requires_grad]
    # the fused kernel updates each tensor in one pass: on CPU 4-5x faster than foreach
    # (6 ms vs 16-33 ms per step for 6M parameters), the same update to float rounding
    fused = all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in trainable)
    return torch.optim.AdamW(
        trainable, lr=learning_rate, betas=options.betas, weight_decay=options.weight_decay,
        fused=fused or None, foreach=None if fused else True,
    )


def schedule_factor(step: int, options: Optimizer, total_steps: int) -> float:
    """Multiplier of the base rate at 0-based `step`: linear warmup, then constant, cosine or
    linear decay to 0 at `total_steps`.

    >>> schedule_factor(0, Optimizer(warmup_steps=4), 10)
    0.25
    >>> schedule_factor(10, Optimizer(schedule="cosine"), 10)
    0.0
    """
    if step < options.warmup_steps:
        return (step + 1) / options.warmup_steps
    if options.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - options.warmup_steps) / max(1, total_steps - options.warmup_steps))
    if options.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = rate
