"""Advantage estimators against values computed by hand."""

import math

import pytest
import torch

from rftkit.algo.advantages import ADVANTAGE_ESTIMATORS, EPS, gae, informative_groups

REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])


def test_grpo_by_hand():
    # group 1: mean 0.5, unbiased std sqrt(1/3); group 2: mean 0.25, std 0.5
    s1 = math.sqrt(1 / 3)
    s1, s2 = s1 + EPS, 0.5 + EPS
    expected = torch.tensor([[0.5 / s1, -0.5 / s1, -0.5 / s1, 0.5 / s1], [-0.25 / s2, -0.25 / s2, -0.25 / s2, 0.75 / s2]])
    assert torch.allclose(ADVANTAGE_ESTIMATORS["grpo"](REWARDS), expected, atol=1e-6)


def test_dr_grpo_by_hand():
    expected = torch.tensor([[0.5, -0.5, -0.5, 0.5], [-0.25, -0.25, -0.25, 0.75]])
    assert torch.allclose(ADVANTAGE_ESTIMATORS["dr_grpo"](REWARDS), expected)


def test_rloo_by_hand():
    # r_i minus the mean of the other three
    expected = torch.tensor([[1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3], [0 - 1 / 3, 0 - 1 / 3, 0 - 1 / 3, 1.0]])
    assert torch.allclose(ADVANTAGE_ESTIMATORS["rloo"](REWARDS), expected, atol=1e-6)


def test_reinforce_pp_by_hand():
    centred = torch.tensor([0.5, -0.5, -0.5, 0.5, -0.25, -0.25, -0.25, 0.75])
    mean = centred.mean()  # 0
    std = math.sqrt(((centred - mean) ** 2).sum().item() / 7)
    expected = ((centred - mean) / (std + EPS)).reshape(2, 4)
    assert torch.allclose(ADVANTAGE_ESTIMATORS["reinforce_pp"](REWARDS), expected, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ADVANTAGE_ESTIMATORS))
def test_equal_rewards_give_exactly_zero_advantage(name):
    """Exactly: the float mean of eight 0.1s is not 0.1, which left ~1e-4 advantages."""
    rewards = torch.tensor([[0.1] * 8, [0.7] * 8, [0.0] * 8, [0.0] * 7 + [1.0]])
    advantages = ADVANTAGE_ESTIMATORS[name](rewards)
    assert torch.equal(advantages[:3], torch.zeros(3, 8))
    assert advantages[3].abs().max() > 0.1


def test_informative_groups():
    rewards = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    assert informative_groups(rewards).tolist() == [False, True, False]


def test_gae_by_hand():
    # one sequence of 3 tokens then padding; reward 1 on the last real token
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    gamma, lam = 0.9, 0.8
    d2 = 1.0 - 0.7
    d1 = 0.0 + gamma * 0.7 - 0.6
    d0 = 0.0 + gamma * 0.6 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    assert torch.allclose(advantages, torch.tensor([[a0, a1, a2, 0.0]]), atol=1e-6)
    assert torch.allclose(returns, torch.tensor([[a0 + 0.5, a1 + 0.6, a2 + 0.7, 0.0]]), atol=1e-6)


def test_gae_with_lambda_one_and_gamma_one_is_return_minus_value():
    rewards = torch.tensor([[0.1, -0.2, 1.0]])
    values = torch.tensor([[0.3, 0.2, 0.1]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), 1.0, 1.0)
    reward_to_go = torch.tensor([[0.9, 0.8, 1.0]])
    assert torch.allclose(returns, reward_to_go, atol=1e-6)
    assert torch.allclose(advantages, reward_to_go - values, atol=1e-6)
