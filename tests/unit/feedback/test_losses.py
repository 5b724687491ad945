"""The reward model's losses against values computed by hand."""

import math

import pytest
import torch

from rftkit.feedback.losses import (
    RATING_LOSSES,
    bradley_terry_loss,
    flag_loss,
    ordinal_rating_loss,
    regression_rating_loss,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bradley_terry_is_the_mean_negative_log_sigmoid_of_the_margin():
    chosen, rejected = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])
    # -log sigmoid(1) = 0.313262, -log sigmoid(0) = log 2 = 0.693147, -log sigmoid(-1) = 1.313262
    assert float(bradley_terry_loss(chosen, rejected)) == pytest.approx((0.313262 + 0.693147 + 1.313262) / 3, abs=1e-6)


def test_bradley_terry_gradient_pushes_chosen_up_by_one_minus_the_win_probability():
    chosen = torch.tensor([1.0], requires_grad=True)
    rejected = torch.tensor([0.0], requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    # d/dc softplus(r - c) = -sigmoid(r - c) = -(1 - sigmoid(1)) = -0.268941
    assert float(chosen.grad) == pytest.approx(-0.268941, abs=1e-6)
    assert float(rejected.grad) == pytest.approx(0.268941, abs=1e-6)


def test_bradley_terry_margin_asks_for_a_wider_gap():
    loss = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0]))
    assert float(loss) == pytest.approx(math.log(2), abs=1e-6)  # 1 - 0 - 1 = 0


def test_regression_rating_loss_is_cross_entropy_against_the_scaled_rating():
    # sigmoid(log 3) = 0.75 and rating 4 -> target 0.75: -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.562335
    loss = regression_rating_loss(torch.tensor([math.log(3)]), torch.tensor([4]), 5)
    assert float(loss) == pytest.approx(0.562335, abs=1e-6)
    # score 0 against rating 5 (target 1): -ln 0.5
    assert float(regression_rating_loss(torch.tensor([0.0]), torch.tensor([5]), 5)) == pytest.approx(math.log(2), abs=1e-6)


def test_ordinal_rating_loss_counts_every_threshold():
    # thresholds -3, -1, 1, 3; score 0, rating 3: the two below are passed, the two above not
    expected_3 = 2 * (softplus(-3) + softplus(-1))
    assert float(ordinal_rating_loss(torch.tensor([0.0]), torch.tensor([3]), 5)) == pytest.approx(expected_3, abs=1e-5)
    # rating 5: all four should be passed
    expected_5 = softplus(-3) + softplus(-1) + softplus(1) + softplus(3)
    assert float(ordinal_rating_loss(torch.tensor([0.0]), torch.tensor([5]), 5)) == pytest.approx(expected_5, abs=1e-5)


@pytest.mark.parametrize("name", sorted(RATING_LOSSES))
def test_each_rating_loss_is_smallest_at_a_score_that_orders_the_ratings(name):
    grid = [x / 10 for x in range(-80, 81)]

    def best_score(rating: int) -> float:
        losses = [float(RATING_LOSSES[name](torch.tensor([s]), torch.tensor([rating]), 5)) for s in grid]
        return grid[losses.index(min(losses))]

    assert best_score(1) < best_score(3) < best_score(5)


def test_flag_loss_is_binary_cross_entropy():
    assert float(flag_loss(torch.tensor([0.0, 0.0]), torch.tensor([1, 0]))) == pytest.approx(math.log(2), abs=1e-6)
