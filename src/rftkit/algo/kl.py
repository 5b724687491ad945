"""KL divergence to the reference policy, estimated per token from sampled tokens.

With log_ratio = log pi(y_t) - log pi_ref(y_t) for tokens sampled from pi (Schulman,
"Approximating KL Divergence", 2020):
- k1 = log_ratio: unbiased, high variance, can be negative;
- k2 = log_ratio^2 / 2: biased, low variance, its gradient is the true KL's gradient;
- k3 = exp(-log_ratio) - 1 + log_ratio: unbiased and always >= 0 (GRPO's choice).
"""

from __future__ import annotations

from typing import Callable

import torch

KL_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "k1": lambda log_ratio: log_ratio,
    "k2": lambda log_ratio: 0.5 * log_ratio.square(),
    "k3": lambda log_ratio: torch.expm1(-log_ratio) + log_ratio,
}


def kl_divergence(logprobs_NT: torch.Tensor, reference_logprobs_NT: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL estimate [N, T]. The log-ratio is clamped to +-20 so one extreme token
    cannot overflow exp() in k3."""
    log_ratio = (logprobs_NT - reference_logprobs_NT).clamp(-20.0, 20.0)
    return KL_ESTIMATORS[estimator](log_ratio)


def mean_kl(logprobs_NT: torch.Tensor, reference_logprobs_NT: torch.Tensor, mask_NT: torch.Tensor,
            estimator: str) -> torch.Tensor:
    """The token-mean KL estimate over the tokens `mask_NT` selects (a 0-dim tensor): what is
    logged as `kl`, here for monitoring a run whose KL coefficient is 0.

    >>> lp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.0, -1.0]])
    >>> float(mean_kl(lp, ref, torch.tensor([[1, 0]]), "k1")), float(mean_kl(lp, ref, torch.ones(1, 2), "k1"))
    (0.0, -0.5)
    """
    mask = mask_NT.float()
    return (kl_divergence(logprobs_NT, reference_logprobs_NT, estimator) * mask).sum() / mask.sum().clamp(min=1.0)
