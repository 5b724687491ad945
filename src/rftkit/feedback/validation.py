"""Calibrating a trained reward model and measuring it on held-out feedback.

Per head, on answers the model never trained on:
- `pairwise_accuracy`: the share of the head's pairs (better, worse) that it scores in that
  order (a tie counts half) — for `preference`, how often it agrees with the reviewer's pick;
- `correlation`: Pearson's r between calibrated scores and targets (ratings scaled to [0, 1],
  the safe flag) — how well it tracks the ratings themselves;
- `ece_raw` / `ece`: expected calibration error of sigmoid(raw score) and of the calibrated
  score against the targets; calibration is fitted on a different split than it is judged on.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import torch

from rftkit.models.calibration import CALIBRATORS, apply_calibration, expected_calibration_error, sigmoid
from rftkit.feedback.dataset import FeedbackData, label_target
from rftkit.models.reward import RewardModel


def head_points(model: RewardModel, data: FeedbackData, raw_NH: torch.Tensor, k: int) -> tuple[list[float], list[float]]:
    """(raw scores, targets in [0, 1]) of head k's labels."""
    head = model.heads[k]
    labels = [(a, v) for c in data.comparisons for h, a, v in c.labels if h == k]
    return [float(raw_NH[a, k]) for a, _ in labels], [label_target(head, v) for _, v in labels]


def calibrate(model: RewardModel, data: FeedbackData, method: str, batch_size: int = 32) -> None:
    """Fit each head's calibration on `data` (held out from training) and store it on the head."""
    raw_NH = model.raw_scores(data.ids, batch_size)
    for k, head in enumerate(model.heads):
        scores, targets = head_points(model, data, raw_NH, k)
        head.calibration = CALIBRATORS[method](scores, targets) if scores else CALIBRATORS["none"]([], [])


def pairwise_accuracy(raw_N: list[float], pairs: list[tuple[int, int]]) -> float | None:
    """Share of (better, worse) pairs scored in that order; ties count half.

    >>> pairwise_accuracy([3.0, 1.0, 1.0], [(0, 1), (1, 2), (2, 0)])
    0.5
    """
    if not pairs:
        return None
    return sum(1.0 if raw_N[b] > raw_N[w] else 0.5 if raw_N[b] == raw_N[w] else 0.0 for b, w in pairs) / len(pairs)


def correlation(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return statistics.correlation(xs, ys)


def validate(model: RewardModel, data: FeedbackData, split_name: str = "test", batch_size: int = 32) -> dict:
    """Per-head figures on `data`, and the head that carries the headline number."""
    raw_NH = model.raw_scores(data.ids, batch_size)
    heads = {}
    for k, head in enumerate(model.heads):
        pairs = [(b, w) for c in data.comparisons for h, b, w in c.pairs if h == k]
        scores, targets = head_points(model, data, raw_NH, k)
        calibrated = [apply_calibration(head.calibration, s) for s in scores]
        heads[head.name] = {
            "kind": head.kind,
            "pairs": len(pairs),
            "pairwise_accuracy": pairwise_accuracy(raw_NH[:, k].tolist(), pairs),
            "labels": len(scores),
            "correlation": correlation(calibrated, targets) if head.kind != "preference" else None,
            "ece_raw": expected_calibration_error([sigmoid(s) for s in scores], targets) if scores else None,
            "ece": expected_calibration_error(calibrated, targets) if scores else None,
            "calibration": head.calibration["method"],
        }
    return {"split": split_name, "judgements": len(data), "heads": heads}


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_report(out: Path, metrics: dict) -> Path:
    """metrics.json and report.md in the reward model's directory."""
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    lines = [
        f"# Reward model: {out.name}",
        "",
        f"Base `{metrics.get('base', '?')}`; split sizes (judgements) {metrics.get('split_sizes', {})}; "
        f"trained {len(metrics.get('history', []))} epochs in {metrics.get('seconds', 0):.0f} s.",
        f"Measured on the **{metrics['split']}** split ({metrics['judgements']} judgements, never trained on; "
        "calibration fitted on the calibration split).",
        "",
        "| head | kind | pairs | pairwise accuracy | correlation | ECE raw | ECE calibrated | calibration |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, h in metrics["heads"].items():
        lines.append(f"| {name} | {h['kind']} | {h['pairs']} | {_fmt(h['pairwise_accuracy'])} | {_fmt(h['correlation'])} "
                     f"| {_fmt(h['ece_raw'])} | {_fmt(h['ece'])} | {h['calibration']} |")
    lines += ["", "| epoch | train loss | held-out loss |", "|---|---|---|"]
    lines += [f"| {r['epoch']} | {r['train_loss']:.4f} | {r['valid_loss']:.4f} |" for r in metrics.get("history", [])]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
