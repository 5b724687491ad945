"""Calibration: map a reward head's raw score to a number in [0, 1] that means what it says.

A head's target is a value in [0, 1] per answer (a rating scaled to [0, 1], 1 for "not
flagged unsafe", 1 for "the answer picked"); a calibrated score should equal the average
target among answers that get that score. Fitted on held-out answers, never on training ones:

- `temperature`: sigmoid(a * s), one parameter (Guo et al., 2017) — keeps the ranking;
- `platt`: sigmoid(a * s + b) (Platt, 1999) — keeps the ranking, fixes the offset too;
- `isotonic`: the best non-decreasing step map by pool-adjacent-violators (Zadrozny & Elkan,
  2002), interpolated linearly between steps — flexible, needs more data.

`expected_calibration_error` is the gap between score and outcome averaged over equal-width
bins, weighted by how many scores fall in each (Naeini et al., 2015). Everything here works on
plain lists of floats: pure math, no torch.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def expected_calibration_error(probabilities: list[float], targets: list[float], bins: int = 10) -> float:
    """sum over bins of (n_bin / n) * |mean probability - mean target| (bins of width 1/bins).

    >>> expected_calibration_error([0.1, 0.1, 0.9, 0.9], [0, 0, 1, 0])   # (2 * 0.1 + 2 * 0.4) / 4
    0.25
    """
    if not probabilities:
        return 0.0
    totals: dict[int, list[float]] = {}
    for p, t in zip(probabilities, targets):
        index = min(int(p * bins), bins - 1)
        entry = totals.setdefault(index, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += p
        entry[2] += t
    return round(sum(abs(s_p - s_t) for _, s_p, s_t in totals.values()) / len(probabilities), 12)


def _logistic_loss(scores: list[float], targets: list[float], a: float, b: float, ridge: float) -> float:
    """Cross-entropy of sigmoid(a * s + b) against targets, plus ridge * (a^2 + b^2) / 2."""
    total = 0.0
    for s, t in zip(scores, targets):
        z = a * s + b
        total += max(z, 0.0) - t * z + math.log1p(math.exp(-abs(z)))  # softplus(z) - t z, stably
    return total + ridge * (a * a + b * b) / 2


def _newton_logistic(scores: list[float], targets: list[float], fit_bias: bool, steps: int = 100) -> tuple[float, float]:
    """(a, b) minimising the cross-entropy of sigmoid(a * s + b) against targets in [0, 1],
    by Newton's method with a backtracking line search (a full step overshoots when scores
    are far apart) and a small ridge (separable data would send a to infinity)."""
    a, b, ridge = 1.0, 0.0, 1e-3
    loss = _logistic_loss(scores, targets, a, b, ridge)
    for _ in range(steps):
        g_a, g_b, h_aa, h_ab, h_bb = ridge * a, ridge * b, ridge, 0.0, ridge
        for s, t in zip(scores, targets):
            p = sigmoid(a * s + b)
            w = p * (1 - p)
            g_a, g_b = g_a + (p - t) * s, g_b + (p - t)
            h_aa, h_ab, h_bb = h_aa + w * s * s, h_ab + w * s, h_bb + w
        if fit_bias:
            det = h_aa * h_bb - h_ab * h_ab
            step_a, step_b = (h_bb * g_a - h_ab * g_b) / det, (h_aa * g_b - h_ab * g_a) / det
        else:
            step_a, step_b = g_a / h_aa, 0.0
        shrink = 1.0
        while shrink > 1e-6:
            trial = _logistic_loss(scores, targets, a - shrink * step_a, b - shrink * step_b, ridge)
            if trial <= loss:
                break
            shrink /= 2
        else:
            break  # no step lowers the loss: at the minimum to float precision
        a, b, loss = a - shrink * step_a, b - shrink * step_b, trial
        if shrink * (abs(step_a) + abs(step_b)) < 1e-10:
            break
    return a, b


def fit_platt(scores: list[float], targets: list[float]) -> dict:
    a, b = _newton_logistic(scores, targets, fit_bias=True)
    return {"method": "platt", "a": a, "b": b}


def fit_temperature(scores: list[float], targets: list[float]) -> dict:
    a, _ = _newton_logistic(scores, targets, fit_bias=False)
    return {"method": "temperature", "a": a, "b": 0.0}


def pool_adjacent_violators(values: list[float], weights: list[float] | None = None) -> list[float]:
    """The non-decreasing sequence closest (weighted least squares) to `values`.

    >>> pool_adjacent_violators([0.0, 1.0, 0.0, 1.0])
    [0.0, 0.5, 0.5, 1.0]
    """
    weights = weights or [1.0] * len(values)
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values, weights):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return [mean for mean, _, count in blocks for _ in range(count)]


def fit_isotonic(scores: list[float], targets: list[float]) -> dict:
    """Knots (x, y): distinct scores and the fitted non-decreasing value at each."""
    grouped: dict[float, list[float]] = {}
    for s, t in zip(scores, targets):
        grouped.setdefault(s, []).append(t)
    xs = sorted(grouped)
    fitted = pool_adjacent_violators([sum(grouped[x]) / len(grouped[x]) for x in xs], [len(grouped[x]) for x in xs])
    return {"method": "isotonic", "x": xs, "y": fitted}


def apply_calibration(params: dict, score: float) -> float:
    """The calibrated score in [0, 1] for one raw score.

    >>> apply_calibration({"method": "platt", "a": 2.0, "b": -1.0}, 0.5)
    0.5
    >>> apply_calibration({"method": "isotonic", "x": [0.0, 1.0], "y": [0.2, 0.6]}, 0.25)
    0.3
    """
    if params["method"] in ("platt", "temperature", "none"):
        return sigmoid(params.get("a", 1.0) * score + params.get("b", 0.0))
    xs, ys = params["x"], params["y"]
    if score <= xs[0]:
        return ys[0]
    if score >= xs[-1]:
        return ys[-1]
    right = bisect.bisect_right(xs, score)
    x0, x1, y0, y1 = xs[right - 1], xs[right], ys[right - 1], ys[right]
    return round(y0 + (y1 - y0) * (score - x0) / (x1 - x0), 12)


CALIBRATORS: dict[str, Callable[[list[float], list[float]], dict]] = {
    "platt": fit_platt,
    "temperature": fit_temperature,
    "isotonic": fit_isotonic,
    "none": lambda scores, targets: {"method": "none", "a": 1.0, "b": 0.0},
}
