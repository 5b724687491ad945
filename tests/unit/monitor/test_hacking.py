"""Reward-hacking monitors: each warning fires on the pattern it names, and only then."""

from typing import Literal

import pytest

from rftkit.config import MonitorOptions
from rftkit.graders import build_grader
from rftkit.graders.base import REGISTRY, Grader, GraderSpec, register
from rftkit.graders.batch import grade_batch
from rftkit.monitor.hacking import HackingMonitor
from rftkit.train.metrics import grader_metrics
from rftkit.types import Sample


def test_reward_correlated_with_length_warns():
    monitor = HackingMonitor(MonitorOptions(length_correlation=0.5))
    lengths = list(range(10, 26))
    rewards = [length / 25 for length in lengths]
    (warning,) = monitor.on_step({"step": 3}, rewards, lengths)
    assert "correlates with completion length" in warning and "longer" in warning
    uncorrelated = [1.0, 0.0] * 8
    assert monitor.on_step({"step": 4}, uncorrelated, [10] * 8 + [11] * 8) == []


def test_kl_jump_warns_after_a_history():
    monitor = HackingMonitor(MonitorOptions(kl_jump=5.0))
    for step, kl in enumerate([0.0, 0.001, 0.004, 0.008, 0.01, 0.012, 0.011, 0.013, 0.012, 0.011], start=1):
        assert monitor.on_step({"step": step, "kl": kl}, [], []) == []  # the early rise is not a jump
    assert monitor.on_step({"step": 11, "kl": 0.025}, [], []) == []  # 2x, small in absolute terms
    (warning,) = monitor.on_step({"step": 12, "kl": 0.2}, [], [])
    assert "KL jumped to 0.2000" in warning


ISSUE_TRAIN = [0.40, 0.52, 0.64, 0.76, 0.88]
ISSUE_VALID = [0.24, 0.22, 0.185, 0.19, 0.155]  # issue 17: overfitting that never warned


def test_overfitting_trend_from_the_issue_warns_once():
    """Window 3: at the 4th evaluation mean(0.22, 0.185, 0.19) = 0.1983 is 17.4% below the earlier
    best 0.24 (> 15%) while train rose (0.40 -> mean 0.64); the 5th (0.1767, 26% below the same
    best) is the same drop, not reported again."""
    monitor = HackingMonitor(MonitorOptions(valid_drop_evals=3, valid_drop_margin=0.15))
    said = [monitor.on_eval(10 * i, t, v) for i, (t, v) in enumerate(zip(ISSUE_TRAIN, ISSUE_VALID), start=1)]
    assert said[:3] == [[], [], []] and said[4] == []
    (warning,) = said[3]
    assert "averages 0.198, 17% below its best 0.240" in warning and "0.400 -> 0.640" in warning
    assert monitor.warning_counts == {"validation_drop": 1}


def test_validation_drop_warns_again_after_a_new_best():
    monitor = HackingMonitor(MonitorOptions(valid_drop_evals=1, valid_drop_margin=0.1))
    for step, valid in enumerate([0.5, 0.4, 0.6, 0.5], start=1):  # 0.4 is 20% under 0.5; 0.5 is 17% under 0.6
        monitor.on_eval(step, 0.1 * step, valid)
    assert monitor.warning_counts == {"validation_drop": 2}


@pytest.mark.parametrize("valid", [
    [0.30, 0.32, 0.29, 0.31, 0.28, 0.30, 0.31, 0.29],  # noisy but flat: at most 8.3% under the best 0.32
    [0.20, 0.25, 0.30, 0.35, 0.40, 0.45],  # rising
])
def test_flat_or_rising_validation_does_not_warn(valid):
    monitor = HackingMonitor(MonitorOptions(valid_drop_evals=3, valid_drop_margin=0.15))
    rising_train = [0.3 + 0.05 * i for i in range(len(valid))]
    assert all(monitor.on_eval(i, t, v) == [] for i, (t, v) in enumerate(zip(rising_train, valid)))


def test_validation_drop_with_train_falling_too_is_not_overfitting():
    monitor = HackingMonitor(MonitorOptions(valid_drop_evals=3, valid_drop_margin=0.15))
    falling_train = list(reversed(ISSUE_TRAIN))
    assert all(monitor.on_eval(i, t, v) == [] for i, (t, v) in enumerate(zip(falling_train, ISSUE_VALID)))


LENGTHS = [10, 11, 12, 13, 14, 15, 16, 17] * 2
CORRELATED = [0.1, 0.5, 0.2, 0.6, 0.3, 0.4, 0.7, 0.8, 0.3, 0.1, 0.5, 0.4, 0.2, 0.8, 0.6, 0.6]  # r = 0.70


def test_a_steady_length_correlation_warns_once_then_only_when_worse():
    monitor = HackingMonitor(MonitorOptions(length_correlation=0.5, length_correlation_repeat=0.1))
    (first,) = monitor.on_step({"step": 1}, CORRELATED, LENGTHS)
    assert "r = 0.70" in first
    for step in range(2, 16):  # wrong answers are simply longer, every step: said once
        assert monitor.on_step({"step": step}, CORRELATED, LENGTHS) == []
    (worse,) = monitor.on_step({"step": 16}, [x / 20 for x in LENGTHS], LENGTHS)  # r = 1.00 >= 0.70 + 0.1
    assert "r = 1.00" in worse
    assert monitor.warning_counts == {"length_correlation": 2}


def test_auto_pause():
    monitor = HackingMonitor(MonitorOptions(auto_pause_kl=0.1))
    assert monitor.should_pause({"kl": 0.05}, []) is None
    assert "exceeded auto_pause_kl" in monitor.should_pause({"kl": 0.2}, [])
    on_warning = HackingMonitor(MonitorOptions(auto_pause_on_warning=True))
    assert on_warning.should_pause({}, ["something"]) is not None
    assert on_warning.should_pause({}, []) is None


class JudgeDownSpec(GraderSpec):
    type: Literal["test_judge_down"]


if "test_judge_down" not in REGISTRY:

    @register("test_judge_down")
    class JudgeDown(Grader):
        """A judge whose server is down: every call fails, as score_model's does on a refused connection."""

        spec_model = JudgeDownSpec

        def score(self, sample, item):
            raise ConnectionRefusedError("judge at 127.0.0.1:9 refused the connection")


def failing_step(step: int, grader) -> dict:
    """A step's metrics row from real grades of `grader` (the top grader's error rate among them)."""
    samples = [Sample(output_text=f"answer {i}") for i in range(4)]
    return {"step": step, **grader_metrics([grade_batch(grader, samples, [{}] * 4)], "train")}


def test_a_grader_that_is_down_warns_once_per_outage_and_can_pause():
    down, healthy = build_grader({"type": "test_judge_down", "name": "judge"}), build_grader(
        {"type": "string_check", "name": "judge", "input": "{{ sample.output_text }}", "reference": "a",
         "operation": "like"})
    monitor = HackingMonitor(MonitorOptions(grader_error_rate=0.5, auto_pause_on_warning=True))
    metrics = failing_step(1, down)
    assert metrics["train_grader_judge_error_rate"] == 1.0 and metrics["train_grader_judge_mean"] == 0.0
    (warning,) = monitor.on_step(metrics, [], [])
    assert "the grader failed on 100% of the samples" in warning and "monitor.grader_error_rate 0.5" in warning
    assert "auto_pause_on_warning" in monitor.should_pause(metrics, [warning])
    assert monitor.on_step(failing_step(2, down), [], []) == []  # the same outage
    assert monitor.on_step(failing_step(3, healthy), [], []) == []
    assert len(monitor.on_step(failing_step(4, down), [], [])) == 1  # down again
    assert monitor.warning_counts == {"grader_errors": 2}


def test_monitor_state_round_trips_through_json():
    import json

    monitor = HackingMonitor(MonitorOptions())
    for i, (t, v) in enumerate(zip(ISSUE_TRAIN, ISSUE_VALID)):
        monitor.on_eval(i, t, v)
    monitor.on_step({"step": 1, "kl": 0.01}, CORRELATED, LENGTHS)
    restored = HackingMonitor(MonitorOptions())
    restored.load_state_dict(json.loads(json.dumps(monitor.state_dict())))
    assert restored == monitor
    assert restored.on_step({"step": 2}, CORRELATED, LENGTHS) == []  # remembers it already warned
