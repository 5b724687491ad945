"""Policy losses (per token), their aggregation, entropy, and PPO's value loss.

A policy loss maps log-probabilities under the current policy, the policy that sampled
(`old`), and advantages to a per-token loss [N, T]; `aggregate` reduces it to a scalar.
When training is fully on-policy (one update per batch) the caller passes
old = current.detach(): the ratio is exactly 1, the clip never binds, and the loss is the
plain policy gradient — no extra forward pass is needed for `old`.
"""

from __future__ import annotations

from typing import Callable

import torch

POLICY_LOSSES: dict[str, Callable[..., tuple[torch.Tensor, dict]]] = {}


def policy_loss(name: str):
    def add(fn):
        POLICY_LOSSES[name] = fn
        return fn

    return add


def _clipped_surrogate(ratio_NT, advantages_NT, mask_NT, clip_low, clip_high):
    unclipped = ratio_NT * advantages_NT
    clipped = ratio_NT.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages_NT
    loss_NT = -torch.minimum(unclipped, clipped)
    with torch.no_grad():
        real = mask_NT.bool()
        clip_frac = ((clipped < unclipped) & real).float().sum() / real.sum().clamp(min=1)
    return loss_NT, {"clip_frac": float(clip_frac)}


@policy_loss("ppo_clip")
def ppo_clip(logprobs_NT, old_logprobs_NT, advantages_NT, mask_NT, *, clip_low=0.2, clip_high=0.2):
    """PPO's clipped surrogate with separate bounds, ratio clipped to [1-low, 1+high]
    (Schulman et al., 2017; "clip-higher" from DAPO, Yu et al., 2025, lets unlikely tokens
    that did well grow faster)."""
    ratio_NT = torch.exp(logprobs_NT - old_logprobs_NT)
    return _clipped_surrogate(ratio_NT, advantages_NT, mask_NT, clip_low, clip_high)


@policy_loss("gspo")
def gspo(logprobs_NT, old_logprobs_NT, advantages_NT, mask_NT, *, clip_low=3e-4, clip_high=4e-4):
    """Sequence-level ratio (Zheng et al., GSPO, 2025): s = exp(mean_t log(pi/pi_old)), clipped
    per sequence. Written token-wise as sg[s] * pi(y_t) / sg[pi(y_t)] so that every token of a
    sequence shares the ratio and the gradient of the length-normalised log-likelihood."""
    mask = mask_NT.to(logprobs_NT.dtype)
    log_ratio_NT = (logprobs_NT - old_logprobs_NT) * mask
    sequence_log_ratio_N = log_ratio_NT.sum(-1) / mask.sum(-1).clamp(min=1)
    token_log_ratio_NT = sequence_log_ratio_N.detach()[:, None] + logprobs_NT - logprobs_NT.detach()
    ratio_NT = torch.exp(token_log_ratio_NT.clamp(max=20.0))
    return _clipped_surrogate(ratio_NT, advantages_NT, mask_NT, clip_low, clip_high)


def _token_mean(loss_NT, mask_NT, denominators):
    return (loss_NT * mask_NT).sum() / denominators["tokens"]


def _sequence_mean(loss_NT, mask_NT, denominators):
    per_sequence = (loss_NT * mask_NT).sum(-1) / mask_NT.sum(-1).clamp(min=1)
    return per_sequence.sum() / denominators["sequences"]


def _constant(loss_NT, mask_NT, denominators):
    return (loss_NT * mask_NT).sum() / (denominators["sequences"] * denominators["max_tokens"])


# token_mean: every token weighs the same (DAPO); sequence_mean: every sequence weighs the same
# (the original GRPO, which favours short wrong answers); constant: a fixed divisor G * T_max
# (Dr. GRPO), free of length bias.
AGGREGATIONS = {"token_mean": _token_mean, "sequence_mean": _sequence_mean, "constant": _constant}


def aggregate(loss_NT: torch.Tensor, mask_NT: torch.Tensor, mode: str, denominators: dict | None = None) -> torch.Tensor:
    """Reduce a per-token loss to a scalar.

    `denominators` (tokens, sequences, max_tokens) are those of the whole batch, so that
    micro-batches summed give exactly the full batch's loss; by default they are this
    tensor's own.
    """
    mask = mask_NT.to(loss_NT.dtype)
    if denominators is None:
        denominators = batch_denominators(mask_NT)
    return AGGREGATIONS[mode](loss_NT, mask, denominators)


def batch_denominators(mask_NT: torch.Tensor) -> dict:
    return {
        "tokens": float(mask_NT.sum().clamp(min=1)),
        "sequences": float(max(mask_NT.shape[0], 1)),
        "max_tokens": float(max(mask_NT.shape[1], 1)),
    }


def entropy_from_logits(logits_NTV: torch.Tensor) -> torch.Tensor:
    """Entropy of each next-token distribution [N, T]: logsumexp(z) - sum softmax(z) * z."""
    logits = logits_NTV.float()
    return torch.logsumexp(logits, dim=-1) - (logits.softmax(-1) * logits).sum(-1)


def value_loss(values_NT, old_values_NT, returns_NT, mask_NT, *, clip: float | None = 0.2):
    """PPO's clipped value loss: 0.5 * max((V - R)^2, (clip(V, V_old +- eps) - R)^2), per token."""
    squared = (values_NT - returns_NT).square()
    if clip is not None:
        clipped = old_values_NT + (values_NT - old_values_NT).clamp(-clip, clip)
        squared = torch.maximum(squared, (clipped - returns_NT).square())
    with torch.no_grad():
        real = mask_NT.bool()
        explained = 0.0
        if real.sum() > 1:
            residual = (returns_NT - values_NT)[real].var() / returns_NT[real].var().clamp(min=1e-8)
            explained = float(1 - residual)
    return 0.5 * squared, {"explained_variance": explained}
