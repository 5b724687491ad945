"""Reward-hacking monitors: signs that the policy is pleasing the grader, not the user.

- train reward rising while validation reward falls (overfitting the grader or the prompts);
- reward correlating with completion length (graders that prefer long or short answers);
- KL to the reference jumping (the policy leaving its prior fast, often into exploits).
Each returns warnings as text; the run logs them as events and may pause on them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

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


@dataclass
class HackingMonitor:
    options: MonitorOptions
    kl_history: list[float] = field(default_factory=list)
    evals: list[tuple[float, float]] = field(default_factory=list)  # (train reward since last eval, valid reward)

    def on_step(self, metrics: dict, rewards: list[float], lengths: list[int]) -> list[str]:
        warnings = []
        corr = pearson([float(x) for x in lengths], rewards) if len(rewards) >= 8 else None
        if corr is not None and abs(corr) > self.options.length_correlation:
            side = "longer" if corr > 0 else "shorter"
            warnings.append(f"step {metrics['step']}: reward correlates with completion length "
                            f"(r = {corr:.2f}): the grader may be rewarding {side} answers rather than better ones")
        kl = metrics.get("kl")
        if kl is not None:
            # KL grows from 0 as training starts: judge jumps only against a settled history,
            # and only jumps that are large in absolute terms too
            if len(self.kl_history) >= 10:
                median = statistics.median(self.kl_history[-20:])
                if kl - median > 0.02 and kl > self.options.kl_jump * max(median, 1e-4):
                    warnings.append(f"step {metrics['step']}: KL jumped to {kl:.4f}, {kl / max(median, 1e-4):.1f}x "
                                    "its recent median: the policy is moving away from the reference fast")
            self.kl_history.append(kl)
        return warnings

    def on_eval(self, step: int, train_reward: float, valid_reward: float) -> list[str]:
        self.evals.append((train_reward, valid_reward))
        span = self.options.valid_drop_evals
        if len(self.evals) <= span:
            return []
        recent = self.evals[-(span + 1):]
        valid_falls = all(b[1] < a[1] for a, b in zip(recent, recent[1:]))
        train_rises = recent[-1][0] > recent[0][0]
        if valid_falls and train_rises:
            return [f"step {step}: validation reward fell {span} evaluations in a row "
                    f"({recent[0][1]:.3f} -> {recent[-1][1]:.3f}) while train reward rose "
                    f"({recent[0][0]:.3f} -> {recent[-1][0]:.3f}): possible reward hacking or overfitting"]
        return []

    def should_pause(self, metrics: dict, warnings: list[str]) -> str | None:
        kl = metrics.get("kl")
        if self.options.auto_pause_kl is not None and kl is not None and kl > self.options.auto_pause_kl:
            return f"KL {kl:.4f} exceeded auto_pause_kl {self.options.auto_pause_kl}"
        if self.options.auto_pause_on_warning and warnings:
            return "a reward-hacking warning (auto_pause_on_warning)"
        return None
