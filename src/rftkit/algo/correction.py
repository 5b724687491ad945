"""Truncated importance sampling: learning from samples drawn by an engine that is not the trainer.

vLLM's kernels, a remote server or a policy one step behind (async training) sample with
log-probs pi_sampler that differ from the trainer's pi_old for the same weights. The policy
gradient is an expectation under pi_old, so each sampled token's loss is reweighted by
w = pi_old / pi_sampler, truncated at a cap C to bound the variance (Espeholt et al., 2018,
IMPALA's V-trace truncation; Yao et al., 2025, "Your efficient RL framework secretly brings
you off-policy RL training", the TIS of verl and TRL):

- token: w_t = min(exp(old_t - sampler_t), C), per token;
- sequence: w = min(exp(sum_t (old_t - sampler_t)), C), one weight for every token of a sequence.

The weights are constants (no gradient). When the two log-probs are equal every weight is
exactly 1, and the loss is the uncorrected one.
"""

from __future__ import annotations

import math

import torch

LEVELS = ("token", "sequence")


def truncated_importance_weights(old_logprobs_NT: torch.Tensor, sampler_logprobs_NT: torch.Tensor,
                                 mask_NT: torch.Tensor, *, cap: float = 2.0,
                                 level: str = "token") -> tuple[torch.Tensor, dict]:
    """([N, T] weights, 1 on masked positions; stats): `is_ratio_mean`, the mean ratio before
    truncation over the masked tokens (or sequences), and `is_capped_frac`, the share truncated."""
    if level not in LEVELS:
        raise ValueError(f"level {level!r}: one of {', '.join(LEVELS)}")
    real = mask_NT.bool()
    log_ratio_NT = ((old_logprobs_NT - sampler_logprobs_NT) * real).detach()
    if level == "sequence":
        log_ratio_NT = log_ratio_NT.sum(-1, keepdim=True)  # [N, 1]
        counted = real.any(-1, keepdim=True)
    else:
        counted = real
    log_ratio_NT = log_ratio_NT.clamp(max=20.0)  # a wild ratio is capped anyway; keep exp() finite
    ratio = torch.exp(log_ratio_NT)
    capped = (log_ratio_NT > math.log(cap)) & counted
    weights = ratio.clamp(max=cap).expand_as(old_logprobs_NT)
    weights = torch.where(real, weights, torch.ones_like(weights))
    count = counted.sum().clamp(min=1)
    stats = {"is_ratio_mean": float((ratio * counted).sum() / count), "is_capped_frac": float(capped.sum() / count)}
    return weights, stats
