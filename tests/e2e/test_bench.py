"""`rftkit bench` end to end: the equivalence check against TRL, then a short timed run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_checks_equivalence_then_reports_ratios(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "rftkit.cli", "bench", "--steps", "3", "--repeats", "1", "--variants", "full,lora-kl",
         "--work", str(tmp_path), "--write", str(tmp_path / "BENCH.md")],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"throughput ratio rftkit/trl: \d+\.\d\d", lines[-1])
    report = json.loads((tmp_path / "results.json").read_text())
    for check in report["equivalence"]:
        assert check["ok"] and check["loss_diff"] <= 1e-4 and check["grad_norm_diff"] <= 1e-4
        assert 0 < check["reward_mean"] < 1  # the batch carries signal: the check is not of zeros
    for cell in report["cells"]:
        for side in ("rftkit", "trl"):
            figures = cell[side]
            assert figures["completions_per_s"] > 0 and figures["peak_rss_mb"] > 0
            assert len(figures["held_out_curves"][0]) >= 1
    assert "| completions/s |" in (tmp_path / "BENCH.md").read_text()
