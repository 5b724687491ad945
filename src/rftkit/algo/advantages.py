"""Advantages: how much better each sample did than its alternatives.

Outcome estimators take the rewards of B groups of G samples, `rewards_BG`, and return one
advantage per sample, `adv_BG`, shared by all of its tokens. `gae` is PPO's token-level
estimator over a learned value function.
"""

from __future__ import annotations

from typing import Callable

import torch

ADVANTAGE_ESTIMATORS: dict[str, Callable[..., torch.Tensor]] = {}
EPS = 1e-4  # added to a group's std, as DeepSeekMath's reference code and TRL do


def estimator(name: str):
    """Register a group estimator. A group whose rewards are all equal gets exactly zero
    advantage, as the mathematics says: in floats, the mean of eight 0.1s is not 0.1, and
    dividing that rounding error by a zero std plus EPS would leave ~1e-4 advantages (and
    rows the update then cannot skip)."""

    def add(fn):
        def exact(rewards_BG: torch.Tensor) -> torch.Tensor:
            return torch.where(informative_groups(rewards_BG)[:, None], fn(rewards_BG), 0.0)

        exact.__doc__, exact.__name__ = fn.__doc__, fn.__name__
        ADVANTAGE_ESTIMATORS[name] = exact
        return exact

    return add


@estimator("grpo")
def grpo(rewards_BG: torch.Tensor) -> torch.Tensor:
    """(r - group mean) / (group std + eps) (Shao et al., DeepSeekMath, 2024).

    Uses the unbiased std as the paper's reference code does; a group whose rewards are all
    equal gets advantage 0 everywhere.
    """
    mean = rewards_BG.mean(dim=1, keepdim=True)
    std = rewards_BG.std(dim=1, keepdim=True) if rewards_BG.shape[1] > 1 else torch.zeros_like(mean)
    return (rewards_BG - mean) / (std + EPS)


@estimator("dr_grpo")
def dr_grpo(rewards_BG: torch.Tensor) -> torch.Tensor:
    """r - group mean, without the std division (Liu et al., "Understanding R1-Zero-Like
    Training", 2025): dividing by the std over-weights groups that are nearly all right or all
    wrong. Pair with the `constant` loss aggregation to also drop the length bias."""
    return rewards_BG - rewards_BG.mean(dim=1, keepdim=True)


@estimator("rloo")
def rloo(rewards_BG: torch.Tensor) -> torch.Tensor:
    """Leave-one-out baseline: r_i - mean of the other G-1 rewards (Ahmadian et al., 2024).

    Equal to G/(G-1) * (r_i - group mean).
    """
    groups = rewards_BG.shape[1]
    if groups < 2:
        return torch.zeros_like(rewards_BG)
    others_mean = (rewards_BG.sum(dim=1, keepdim=True) - rewards_BG) / (groups - 1)
    return rewards_BG - others_mean


@estimator("reinforce_pp")
def reinforce_pp(rewards_BG: torch.Tensor) -> torch.Tensor:
    """REINFORCE++ with a group baseline, then whitened over the whole batch (Hu, 2025):
    batch statistics are steadier than a single group's."""
    centred = rewards_BG - rewards_BG.mean(dim=1, keepdim=True)
    std = centred.std() if centred.numel() > 1 else torch.zeros(())
    return (centred - centred.mean()) / (std + EPS)


def informative_groups(rewards_BG: torch.Tensor) -> torch.Tensor:
    """[B] bool: groups whose rewards differ. A group where every sample scored the same has
    zero advantage under every group estimator and so teaches nothing (DAPO's dynamic
    sampling drops them, Yu et al., 2025)."""
    return (rewards_BG.max(dim=1).values - rewards_BG.min(dim=1).values) > 0


def gae(
    rewards_NT: torch.Tensor, values_NT: torch.Tensor, mask_NT: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016) over completion tokens.

    rewards_NT holds each token's reward (the outcome reward on the last token, minus a KL
    penalty when it is placed in the reward); values_NT the critic's estimates; mask_NT marks
    real tokens. Returns (advantages_NT, returns_NT); both are 0 on padding.
    """
    mask = mask_NT.to(values_NT.dtype)
    steps = rewards_NT.shape[1]
    advantages = torch.zeros_like(values_NT)
    running = torch.zeros_like(values_NT[:, 0])
    next_value = torch.zeros_like(values_NT[:, 0])
    for t in reversed(range(steps)):
        # padding after the end: carry nothing across it
        delta = rewards_NT[:, t] + gamma * next_value - values_NT[:, t]
        running = delta + gamma * lam * running
        running = running * mask[:, t]
        advantages[:, t] = running
        next_value = values_NT[:, t] * mask[:, t]
    returns = (advantages + values_NT) * mask
    return advantages, returns
