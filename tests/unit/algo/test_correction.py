"""Truncated importance weights against values computed by hand."""

import math

import pytest
import torch

from rftkit.algo.correction import truncated_importance_weights
from rftkit.algo.losses import POLICY_LOSSES, aggregate


def test_token_weights_by_hand():
    old = torch.log(torch.tensor([[0.5, 0.2, 0.9, 0.3]]))
    sampler = torch.log(torch.tensor([[0.25, 0.4, 0.3, 0.3]]))  # ratios 2.0, 0.5, 3.0, 1.0
    mask = torch.tensor([[1, 1, 1, 0]])
    weights, stats = truncated_importance_weights(old, sampler, mask, cap=2.5, level="token")
    assert torch.allclose(weights, torch.tensor([[2.0, 0.5, 2.5, 1.0]]), atol=1e-6)  # 3.0 capped; padding 1
    assert stats["is_ratio_mean"] == pytest.approx((2.0 + 0.5 + 3.0) / 3, rel=1e-6)
    assert stats["is_capped_frac"] == pytest.approx(1 / 3)


def test_sequence_weights_by_hand():
    # sequence 0: log ratios ln 2 + ln 1.5 -> ratio 3, capped at 2; sequence 1: ln 0.5 -> 0.5
    old = torch.tensor([[math.log(2.0), math.log(1.5)], [math.log(0.5), 7.0]])
    sampler = torch.zeros(2, 2)
    mask = torch.tensor([[1, 1], [1, 0]])  # the 7.0 is padding and must not count
    weights, stats = truncated_importance_weights(old, sampler, mask, cap=2.0, level="sequence")
    assert torch.allclose(weights, torch.tensor([[2.0, 2.0], [0.5, 1.0]]), atol=1e-6)
    assert stats["is_ratio_mean"] == pytest.approx((3.0 + 0.5) / 2, rel=1e-6)
    assert stats["is_capped_frac"] == pytest.approx(0.5)


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_equal_logprobs_give_weight_one_and_the_uncorrected_loss(level):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, requires_grad=True)
    logprobs = torch.nn.functional.logsigmoid(logits)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    advantages = torch.randn(3, 1).expand(3, 5)
    weights, stats = truncated_importance_weights(logprobs.detach(), logprobs.detach(), mask, cap=2.0, level=level)
    assert torch.equal(weights, torch.ones(3, 5))
    assert stats == {"is_ratio_mean": 1.0, "is_capped_frac": 0.0}
    losses = []
    for w in (None, weights):
        loss_NT, _ = POLICY_LOSSES["ppo_clip"](logprobs, logprobs.detach(), advantages, mask)
        if w is not None:
            loss_NT = loss_NT * w
        losses.append(aggregate(loss_NT, mask, "token_mean"))
    grads = [torch.autograd.grad(loss, logits, retain_graph=True)[0] for loss in losses]
    assert torch.equal(losses[0], losses[1]) and torch.equal(grads[0], grads[1])


def test_weights_carry_no_gradient_and_stay_finite():
    old = torch.tensor([[50.0, 0.0]], requires_grad=True)
    weights, _ = truncated_importance_weights(old, torch.zeros(1, 2), torch.ones(1, 2), cap=2.0)
    assert not weights.requires_grad and torch.isfinite(weights).all() and weights.max() == 2.0
    with pytest.raises(ValueError, match="level"):
        truncated_importance_weights(old, torch.zeros(1, 2), torch.ones(1, 2), level="word")
