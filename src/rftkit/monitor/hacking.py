"""Reward-hacking monitors: signs that the policy is pleasing the grader, not the user.

- validation reward trending down from its best while train reward rises (overfitting the
  grader or the prompts);
- reward correlating with completion length (graders that prefer long or short answers);
- KL to the reference jumping (the policy leaving its prior fast, often into exploits);
- the grader failing on a large share of a step's samples (a judge that is down turns every
  reward into 0, and the policy then learns from noise).
Each returns warnings as text; the run logs them as events and may pause on them
(`monitor.auto_pause_on_warning`). A monitor remembers what it already said, so that a
condition that persists is reported once, not at every step; `state_dict()` is that memory,
written into checkpoints so that a resumed run neither forgets nor repeats it.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from rftkit.config import MonitorOptions


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Correlation of two equally long series; None when either is constant or too short.

    >>> round(pearson([1, 2, 3, 4], [2, 4, 6, 8]), 6)
    1.0
    >>> pearson([1, 1, 1], [1, 2, 3]) is None
    True
    """
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return statistics.correlation(xs, ys)


def validation_drop(valid: list[float], window: int) -> tuple[float, float] | None:
    """(mean of the last `window` validation rewards, the best reward before them), or None
    while there is no earlier evaluation to compare with. Judging a window's mean against the
    earlier best catches a downward trend that is not a strict fall at every evaluation.

    >>> validation_drop([0.24, 0.22, 0.185, 0.19], 3)
    (0.19833333333333333, 0.24)
    >>> validation_drop([0.24, 0.22], 3) is None
    True
    """
    if len(valid) <= window:
        return None
    return statistics.fmean(valid[-window:]), max(valid[:-window])


def grader_error_rate(metrics: dict) -> float | None:
    """The top grader's error rate in a step's metrics row (`train_grader_<name>_error_rate`,
    the first such key: `train.metrics.grader_metrics` writes the top grader first)."""
    for key, value in metrics.items():
        if key.startswith("train_grader_") and key.endswith("_error_rate"):
            return float(value)
    return None


@dataclass
class HackingMonitor:
    options: MonitorOptions
    kl_history: list[float] = field(default_factory=list)
    evals: list[tuple[float, float]] = field(default_factory=list)  # (train reward since last eval, valid reward)
    length_warned_at: float | None = None  # |r| of the last length-correlation warning
    valid_warned_below: float | None = None  # the best validation reward the last drop warning was judged against
    grader_failing: bool = False  # the last step's error rate was over the threshold (and was reported)
    warning_counts: dict[str, int] = field(default_factory=dict)

    def _warn(self, kind: str, warnings: list[str], text: str) -> None:
        self.warning_counts[kind] = self.warning_counts.get(kind, 0) + 1
        warnings.append(text)

    def on_step(self, metrics: dict, rewards: list[float], lengths: list[int]) -> list[str]:
        warnings: list[str] = []
        self._check_length(metrics["step"], rewards, lengths, warnings)
        self._check_kl(metrics, warnings)
        self._check_grader_errors(metrics, warnings)
        return warnings

    def _check_length(self, step: int, rewards: list[float], lengths: list[int], warnings: list[str]) -> None:
        """Warn when |r| first exceeds the threshold, then only when it grows by another
        `length_correlation_repeat` (a task where wrong answers are simply longer keeps a steady r)."""
        corr = pearson([float(x) for x in lengths], rewards) if len(rewards) >= 8 else None
        if corr is None or abs(corr) <= self.options.length_correlation:
            return
        if self.length_warned_at is not None and abs(corr) < self.length_warned_at + self.options.length_correlation_repeat:
            return
        self.length_warned_at = abs(corr)
        side = "longer" if corr > 0 else "shorter"
        self._warn("length_correlation", warnings,
                   f"step {step}: reward correlates with completion length (r = {corr:.2f}): the grader may "
                   f"be rewarding {side} answers rather than better ones")

    def _check_kl(self, metrics: dict, warnings: list[str]) -> None:
        kl = metrics.get("kl")
        if kl is None:
            return
        # KL grows from 0 as training starts: judge jumps only against a settled history,
        # and only jumps that are large in absolute terms too
        if len(self.kl_history) >= 10:
            median = statistics.median(self.kl_history[-20:])
            if kl - median > 0.02 and kl > self.options.kl_jump * max(median, 1e-4):
                self._warn("kl_jump", warnings,
                           f"step {metrics['step']}: KL jumped to {kl:.4f}, {kl / max(median, 1e-4):.1f}x its "
                           "recent median: the policy is moving away from the reference fast")
        self.kl_history = (self.kl_history + [kl])[-20:]  # only the last 20 are ever read

    def _check_grader_errors(self, metrics: dict, warnings: list[str]) -> None:
        """Warn when the share of grades that errored goes over `grader_error_rate`; once per
        outage: again only after a step under the threshold."""
        rate = grader_error_rate(metrics)
        if rate is None:
            return
        failing = rate > self.options.grader_error_rate
        if failing and not self.grader_failing:
            self._warn("grader_errors", warnings,
                       f"step {metrics['step']}: the grader failed on {rate:.0%} of the samples (over "
                       f"monitor.grader_error_rate {self.options.grader_error_rate:g}): their rewards are 0, so "
                       "this step trains on grader failures; check the grader (a judge or endpoint that is down?)")
        self.grader_failing = failing

    def on_eval(self, step: int, train_reward: float, valid_reward: float) -> list[str]:
        """Warn when the mean of the last `valid_drop_evals` validation rewards is more than
        `valid_drop_margin` (a fraction) below the best earlier one while train reward rose over
        the same evaluations; again only once validation has set a new best."""
        self.evals.append((train_reward, valid_reward))
        window = self.options.valid_drop_evals
        drop = validation_drop([v for _, v in self.evals], window)
        if drop is None:
            return []
        recent_mean, best = drop
        train_before = statistics.fmean(t for t, _ in self.evals[:-window])
        train_recent = statistics.fmean(t for t, _ in self.evals[-window:])
        falling = recent_mean < best * (1 - self.options.valid_drop_margin)
        if not falling or train_recent <= train_before or self.valid_warned_below == best:
            return []
        self.valid_warned_below = best
        warnings: list[str] = []
        self._warn("validation_drop", warnings,
                   f"step {step}: validation reward over the last {window} evaluations averages "
                   f"{recent_mean:.3f}, {1 - recent_mean / best:.0%} below its best {best:.3f}, while train reward "
                   f"rose ({train_before:.3f} -> {train_recent:.3f}): possible reward hacking or overfitting")
        return warnings

    def should_pause(self, metrics: dict, warnings: list[str]) -> str | None:
        kl = metrics.get("kl")
        if self.options.auto_pause_kl is not None and kl is not None and kl > self.options.auto_pause_kl:
            return f"KL {kl:.4f} exceeded auto_pause_kl {self.options.auto_pause_kl}"
        if self.options.auto_pause_on_warning and warnings:
            return "a reward-hacking warning (auto_pause_on_warning)"
        return None

    # ------------------------------------------------------------------ resumable state

    def state_dict(self) -> dict:
        """What the monitors remember, as plain JSON data (for a checkpoint's state.json)."""
        state = asdict(self)
        del state["options"]
        state["evals"] = [list(pair) for pair in self.evals]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.kl_history = list(state.get("kl_history", []))
        self.evals = [(float(t), float(v)) for t, v in state.get("evals", [])]
        self.length_warned_at = state.get("length_warned_at")
        self.valid_warned_below = state.get("valid_warned_below")
        self.grader_failing = bool(state.get("grader_failing", False))
        self.warning_counts = dict(state.get("warning_counts", {}))
