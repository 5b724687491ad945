"""Reward-hacking monitors: each warning fires on the pattern it names, and only then."""

from rftkit.config import MonitorOptions
from rftkit.monitor.hacking import HackingMonitor


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


def test_train_up_valid_down_warns():
    monitor = HackingMonitor(MonitorOptions(valid_drop_evals=2))
    assert monitor.on_eval(10, 0.30, 0.50) == []
    assert monitor.on_eval(20, 0.40, 0.45) == []
    (warning,) = monitor.on_eval(30, 0.50, 0.40)
    assert "validation reward fell 2 evaluations in a row" in warning
    assert monitor.on_eval(40, 0.45, 0.48) == []  # valid recovered


def test_auto_pause():
    monitor = HackingMonitor(MonitorOptions(auto_pause_kl=0.1))
    assert monitor.should_pause({"kl": 0.05}, []) is None
    assert "exceeded auto_pause_kl" in monitor.should_pause({"kl": 0.2}, [])
    on_warning = HackingMonitor(MonitorOptions(auto_pause_on_warning=True))
    assert on_warning.should_pause({}, ["something"]) is not None
    assert on_warning.should_pause({}, []) is None
