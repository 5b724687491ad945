"""The reward model's losses: pure functions of scores and labels, no I/O.

- `bradley_terry_loss`: pairwise preferences. Bradley & Terry (1952) model the chance that
  a is preferred to b as sigmoid(r_a - r_b); the loss is its negative log-likelihood,
  -log sigmoid(r_chosen - r_rejected) = softplus(r_rejected - r_chosen), averaged over pairs
  (Ouyang et al., 2022, eq. 1; Stiennon et al., 2020).
- `RATING_LOSSES`: a pointwise loss per rated answer, by name:
  `regression` — cross-entropy between sigmoid(r) and the rating scaled to [0, 1], minimised
  exactly when sigmoid(r) equals the scaled rating, so the head learns the expected rating;
  `ordinal` — the all-threshold logistic loss (Rennie & Srebro, 2005): for a rating y of K
  levels and fixed thresholds t_1 < ... < t_{K-1}, sum_{k<y} softplus(t_k - r) +
  sum_{k>=y} softplus(r - t_k): every threshold below y should be passed, every one above not.

Shapes: P pairs, A rated answers.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen_P: torch.Tensor, rejected_P: torch.Tensor, margin_P: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of -log sigmoid(chosen - rejected - margin) over P pairs.

    >>> round(float(bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]))), 5)   # log(1 + e^-1)
    0.31326
    """
    difference_P = chosen_P - rejected_P
    if margin_P is not None:
        difference_P = difference_P - margin_P
    return F.softplus(-difference_P).mean()


def scaled_rating(rating_A: torch.Tensor, levels: int) -> torch.Tensor:
    """A rating 1..levels as a target in [0, 1].

    >>> scaled_rating(torch.tensor([1, 3, 5]), 5).tolist()
    [0.0, 0.5, 1.0]
    """
    return (rating_A.float() - 1) / (levels - 1)


def regression_rating_loss(score_A: torch.Tensor, rating_A: torch.Tensor, levels: int) -> torch.Tensor:
    """Mean binary cross-entropy of sigmoid(score) against the scaled rating."""
    return F.binary_cross_entropy_with_logits(score_A, scaled_rating(rating_A, levels))


def ordinal_thresholds(levels: int, spacing: float = 2.0) -> torch.Tensor:
    """K-1 fixed thresholds, evenly `spacing` apart and centred on 0.

    >>> ordinal_thresholds(5).tolist()
    [-3.0, -1.0, 1.0, 3.0]
    """
    return (torch.arange(levels - 1, dtype=torch.float32) - (levels - 2) / 2) * spacing


def ordinal_rating_loss(score_A: torch.Tensor, rating_A: torch.Tensor, levels: int) -> torch.Tensor:
    """Mean all-threshold logistic loss."""
    thresholds_K = ordinal_thresholds(levels).to(score_A.device)  # [K-1]
    below_AK = torch.arange(1, levels, device=score_A.device)[None, :] < rating_A[:, None]  # threshold k passed
    sign_AK = torch.where(below_AK, 1.0, -1.0)
    return F.softplus(-sign_AK * (score_A[:, None] - thresholds_K[None, :])).sum(-1).mean()


RatingLoss = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
RATING_LOSSES: dict[str, RatingLoss] = {
    "regression": regression_rating_loss,
    "ordinal": ordinal_rating_loss,
}


def flag_loss(score_A: torch.Tensor, flag_A: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy for a yes/no label (the unsafe flag, as `safe` = not flagged)."""
    return F.binary_cross_entropy_with_logits(score_A, flag_A.float())
