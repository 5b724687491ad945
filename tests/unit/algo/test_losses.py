"""Policy losses, aggregation, KL and value loss against hand-computed values."""

import math

import pytest
import torch

from rftkit.algo.kl import kl_divergence
from rftkit.algo.losses import POLICY_LOSSES, aggregate, batch_denominators, entropy_from_logits, value_loss


def test_ppo_clip_by_hand():
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.75, 0.25, 0.75, 0.55]]))  # ratios 1.5, 0.5, 1.5, 1.1
    adv = torch.tensor([[1.0, 1.0, -1.0, 1.0]])
    mask = torch.ones(1, 4)
    loss, stats = POLICY_LOSSES["ppo_clip"](new, old, adv, mask, clip_low=0.2, clip_high=0.28)
    # A>0: min(r, clip(r)) -> 1.28, 0.5, ., 1.1 ; A<0: min(-r, -clip(r)) = -1.5
    assert torch.allclose(loss, torch.tensor([[-1.28, -0.5, 1.5, -1.1]]), atol=1e-6)
    assert stats["clip_frac"] == pytest.approx(0.25)


def test_on_policy_ratio_is_one_and_gradient_is_policy_gradient():
    logits = torch.tensor([[0.2, -0.1, 0.4]], requires_grad=True)
    logprobs = torch.nn.functional.logsigmoid(logits)
    adv = torch.tensor([[2.0, 2.0, 2.0]])
    loss, stats = POLICY_LOSSES["ppo_clip"](logprobs, logprobs.detach(), adv, torch.ones(1, 3))
    assert torch.allclose(loss, -adv)
    assert stats["clip_frac"] == 0.0
    loss.sum().backward()
    expected = -(adv * (1 - torch.sigmoid(logits.detach())))  # d/dz of -A*log(sigmoid(z))
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_gspo_shares_one_clipped_ratio_per_sequence():
    old = torch.zeros(2, 2)
    new = torch.tensor([[0.1, 0.3], [0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    loss, stats = POLICY_LOSSES["gspo"](new, old, adv, mask, clip_low=0.1, clip_high=0.1)
    # sequence 1: s = exp(0.2) = 1.2214 -> clipped to 1.1 for a positive advantage
    assert torch.allclose(loss[0], torch.tensor([-1.1, -1.1]), atol=1e-6)
    assert torch.allclose(loss[1, 0], torch.tensor(-1.0))
    assert stats["clip_frac"] == pytest.approx(2 / 3)


def test_aggregations_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate(loss, mask, "token_mean").item() == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert aggregate(loss, mask, "sequence_mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(loss, mask, "constant").item() == pytest.approx(10 / (2 * 3))
    custom = aggregate(loss, mask, "constant", {"tokens": 4.0, "sequences": 2.0, "max_tokens": 8.0})
    assert custom.item() == pytest.approx(10 / 16)


@pytest.mark.parametrize("mode", ["token_mean", "sequence_mean", "constant"])
def test_micro_batches_sum_to_the_full_batch(mode):
    torch.manual_seed(0)
    loss = torch.rand(6, 5)
    mask = (torch.rand(6, 5) > 0.3).long()
    mask[:, 0] = 1
    whole = aggregate(loss, mask, mode)
    denominators = batch_denominators(mask)
    parts = aggregate(loss[:2], mask[:2], mode, denominators) + aggregate(loss[2:], mask[2:], mode, denominators)
    assert parts.item() == pytest.approx(whole.item(), rel=1e-6)


def test_kl_estimators_by_hand():
    logp = torch.tensor([math.log(0.5), math.log(0.2)])
    ref = torch.tensor([math.log(0.25), math.log(0.4)])
    log_ratio = logp - ref  # log 2, log 0.5
    assert torch.allclose(kl_divergence(logp, ref, "k1"), log_ratio)
    assert torch.allclose(kl_divergence(logp, ref, "k2"), 0.5 * log_ratio**2)
    # k3 = ref/p - 1 - log(ref/p): 0.5 - 1 + log 2 ; 2 - 1 - log 2
    expected = torch.tensor([0.5 - 1 + math.log(2), 2 - 1 - math.log(2)])
    assert torch.allclose(kl_divergence(logp, ref, "k3"), expected, atol=1e-6)
    assert torch.all(kl_divergence(logp, logp, "k3") == 0)


def test_entropy_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]]))
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert entropy_from_logits(logits).item() == pytest.approx(expected, rel=1e-6)


def test_value_loss_clipped_by_hand():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.5, 0.1]])
    returns = torch.tensor([[0.0, 1.0]])
    loss, _ = value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    # token 1: unclipped (1-0)^2 = 1, clipped V = 0.7 -> 0.49 -> max 1 ; token 2: (0-1)^2 = 1, clipped 0 -> 1
    assert torch.allclose(loss, torch.tensor([[0.5, 0.5]]))
    loss, _ = value_loss(torch.tensor([[0.0]]), torch.tensor([[0.5]]), torch.tensor([[0.6]]), torch.ones(1, 1), clip=0.2)
    # unclipped 0.36; clipped V = 0.3 -> 0.09; max 0.36
    assert loss.item() == pytest.approx(0.18)
