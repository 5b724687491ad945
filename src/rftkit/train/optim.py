"""AdamW and the learning-rate schedule shared by supervised and RL training."""

from __future__ import annotations

import math

import torch

from rftkit.config import Optimizer


def make_optimizer(params, learning_rate: float, options: Optimizer) -> torch.optim.AdamW:
    trainable = [p for p in params if p.requires_grad]
    # foreach kernels are the fast path on CPU for many small tensors
    return torch.optim.AdamW(
        trainable, lr=learning_rate, betas=options.betas, weight_decay=options.weight_decay, foreach=True
    )


def make_scheduler(optimizer: torch.optim.Optimizer, options: Optimizer, total_steps: int):
    """Linear warmup, then constant, cosine or linear decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < options.warmup_steps:
            return (step + 1) / options.warmup_steps
        if options.schedule == "constant":
            return 1.0
        progress = (step - options.warmup_steps) / max(1, total_steps - options.warmup_steps)
        progress = min(1.0, progress)
        if options.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
