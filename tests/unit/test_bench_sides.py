"""The GRPO benchmark's sides (bench/grpo_vs_trl.py) and how the report names and compares them
(bench/grpo_report.py): TRL is timed at each --nproc as rftkit is, and each at its best is compared."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from grpo_common import Settings  # noqa: E402
from grpo_report import markdown, scaling_lines, side_name  # noqa: E402
from grpo_vs_trl import SIDES, accelerate_launch, best_of, side_processes, sides_of  # noqa: E402


def test_trl_is_timed_at_every_nproc_rftkit_is():
    assert sides_of([1]) == ["rftkit", "trl"]
    assert sides_of([1, 2]) == ["rftkit", "rftkit-nproc2", "trl", "trl-nproc2"]
    assert sides_of([1, 2], asynchronous=True) == ["rftkit", "rftkit-nproc2", "rftkit-async", "trl", "trl-nproc2"]
    assert SIDES["trl-nproc2"] == ("trl", 2, 0)


def test_side_names():
    assert [side_name(s) for s in sides_of([1, 2], asynchronous=True)] == [
        "rftkit", "rftkit --nproc 2", "rftkit async", "TRL", "TRL --nproc 2"]


def test_trl_at_two_processes_is_one_accelerate_launch_with_the_threads_shared_out():
    settings = Settings(threads=4, nproc=2)
    command = [sys.executable, "grpo_sides.py", "trl", "--out", "x"]
    [(launched, env)] = side_processes("trl", settings, command, {"OMP_NUM_THREADS": "2"})
    assert launched[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert launched[launched.index("--num_processes") + 1] == "2"
    assert launched[launched.index("--num_cpu_threads_per_process") + 1] == "2"
    assert launched[-4:] == command[1:]
    assert accelerate_launch(2, 2) == launched[:-4]
    ranks = side_processes("rftkit", settings, command, {"OMP_NUM_THREADS": "2"})
    assert [env["RANK"] for _, env in ranks] == ["0", "1"] and all(c == command for c, _ in ranks)


def cell(rates: dict[str, float]) -> dict:
    figures = {"s_per_step_median": 1.0, "s_per_step_p90": 1.0, "generation_tokens_per_s": 1.0,
               "training_tokens_per_s": 1.0, "peak_rss_mb": 100.0, "flop_utilisation": 0.1,
               "time_to_threshold_s": None, "reached": 0, "held_out_curves": [[{"train_seconds": 0, "reward": 0.2}]]}
    out = {side: dict(figures, completions_per_s=rate) for side, rate in rates.items()}
    out.update(sides=list(rates), label="S full beta=0", params=1, threshold=0.4,
               settings={"prompts_per_step": 16, "group_size": 8, "steps": 4, "learning_rate": 3e-4,
                         "max_completion_tokens": 24},
               scaling=rates["rftkit-nproc2"] / rates["rftkit"], trl_scaling=rates["trl-nproc2"] / rates["trl"])
    out["best"] = best_of(out)
    return out


def test_each_trainer_at_its_best_against_the_other():
    c = cell({"rftkit": 30.0, "rftkit-nproc2": 45.0, "trl": 20.0, "trl-nproc2": 25.0})
    assert c["best"] == {"rftkit": "rftkit-nproc2", "trl": "trl-nproc2", "ratio": 45.0 / 25.0}
    assert scaling_lines(c)[-1] == "each at its best, rftkit --nproc 2 over TRL --nproc 2: 1.80x completions/s"
    assert "TRL at 2 processes over 1 on the same cores: 1.25x completions/s" in scaling_lines(c)


def test_report_table_has_a_column_per_side_and_ratios_against_trl_at_one_process():
    c = cell({"rftkit": 30.0, "rftkit-nproc2": 45.0, "trl": 20.0, "trl-nproc2": 25.0})
    report = {"machine": {"cores": 2, "cpu": "x", "threads": 2, "matmul_gflops": 10.0, "python": "3", "torch": "2",
                          "transformers": "5", "trl": "1", "rftkit": "0"},
              "equivalence": [], "cells": [c], "seconds": 60.0, "command": "rftkit bench --nproc 1,2"}
    lines = markdown(report).splitlines()
    header = next(line for line in lines if line.startswith("| |"))
    assert header == ("| | rftkit | rftkit --nproc 2 | TRL | TRL --nproc 2 | rftkit/TRL | rftkit --nproc 2/TRL |")
    assert "| completions/s | 30 | 45 | 20 | 25 | 1.50 | 2.25 |" in lines
