"""Calibration maps and expected calibration error, by hand and on held-out scores."""

import math
import random

import pytest

from rftkit.models.calibration import (
    CALIBRATORS,
    apply_calibration,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    fit_temperature,
    pool_adjacent_violators,
    sigmoid,
)


def test_ece_by_hand():
    # bin [0.1, 0.2): mean p 0.15 vs 0.5 -> gap 0.35 over 2; bin [0.9, 1): mean 0.95 vs 1 -> 0.05 over 2
    assert expected_calibration_error([0.1, 0.2 - 1e-9, 0.9, 1.0], [0, 1, 1, 1]) == pytest.approx(
        (2 * abs(0.15 - 0.5) + 2 * 0.05) / 4, abs=1e-6)


def test_ece_is_zero_for_perfect_calibration():
    assert expected_calibration_error([0.25] * 4, [0, 0, 0, 1]) == 0.0


def test_pool_adjacent_violators_by_hand():
    assert pool_adjacent_violators([1.0, 3.0, 2.0, 2.0, 5.0]) == pytest.approx([1.0, 7 / 3, 7 / 3, 7 / 3, 5.0])
    assert pool_adjacent_violators([0.0, 1.0], [1.0, 3.0]) == [0.0, 1.0]
    assert pool_adjacent_violators([1.0, 0.0], [1.0, 3.0]) == [0.25, 0.25]  # weighted mean


def test_platt_recovers_a_known_sigmoid_from_soft_targets():
    scores = [x / 10 for x in range(-30, 31)]
    targets = [sigmoid(2.0 * s - 1.0) for s in scores]
    fitted = fit_platt(scores, targets)
    assert fitted["a"] == pytest.approx(2.0, abs=1e-2) and fitted["b"] == pytest.approx(-1.0, abs=1e-2)


def test_temperature_recovers_a_scale_and_keeps_no_offset():
    scores = [x / 10 for x in range(-30, 31)]
    fitted = fit_temperature(scores, [sigmoid(0.5 * s) for s in scores])
    assert fitted["a"] == pytest.approx(0.5, abs=1e-2) and fitted["b"] == 0.0


def test_isotonic_is_monotone_and_interpolates():
    fitted = fit_isotonic([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 0.0, 1.0])
    assert fitted["y"] == [0.0, 0.5, 0.5, 1.0]
    assert apply_calibration(fitted, 2.5) == pytest.approx(0.75)
    assert apply_calibration(fitted, -5.0) == 0.0 and apply_calibration(fitted, 9.0) == 1.0


def overconfident(n: int, seed: int) -> tuple[list[float], list[float]]:
    """Raw scores 3x the true logit, outcomes drawn from the true probability."""
    rng = random.Random(seed)
    logits = [rng.gauss(0.5, 1.5) for _ in range(n)]
    return [3.0 * z for z in logits], [float(rng.random() < sigmoid(z)) for z in logits]


@pytest.mark.parametrize("method", ["platt", "temperature", "isotonic"])
def test_calibration_fitted_on_one_split_lowers_ece_on_another(method):
    fit_scores, fit_targets = overconfident(2000, seed=1)
    test_scores, test_targets = overconfident(2000, seed=2)
    params = CALIBRATORS[method](fit_scores, fit_targets)
    raw = expected_calibration_error([sigmoid(s) for s in test_scores], test_targets)
    calibrated = expected_calibration_error([apply_calibration(params, s) for s in test_scores], test_targets)
    assert raw > 0.08  # the overconfident scores are badly calibrated ...
    assert calibrated < raw / 2  # ... and the fitted map at least halves the error on unseen scores


def test_separable_data_gives_a_finite_platt_fit():
    fitted = fit_platt([-1.0, -0.5, 0.5, 1.0], [0, 0, 1, 1])
    assert math.isfinite(fitted["a"]) and fitted["a"] > 0
    assert apply_calibration(fitted, 1.0) > 0.9 and apply_calibration(fitted, -1.0) < 0.1
