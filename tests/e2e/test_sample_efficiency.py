"""examples/sample_efficiency: its README's figures are those of its saved results, and the
script runs end to end (one seed, one step per condition: the pipeline, not the figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample_efficiency"


@pytest.mark.parametrize("task, seeds", [("addition", [0, 1, 2]), ("sql", [0, 1])])
def test_the_readme_quotes_the_saved_results(tmp_path, task, seeds):
    (tmp_path / f"{task}.json").write_text((EXAMPLE / f"{task}.json").read_text())
    result = subprocess.run([sys.executable, str(EXAMPLE / "run.py"), "--task", task, "--out", str(tmp_path),
                             "--replot"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    readme = (EXAMPLE / "README.md").read_text()
    for line in result.stdout.splitlines()[2:]:  # each condition's row: mean ± sd, and every seed's figure
        cells = [c.strip() for c in line.strip("|").split("|")]
        row = next((r for r in readme.splitlines() if cells[1] in r and cells[3] in r), None)
        assert row is not None, f"README lacks {cells[0]}: {cells[1]} ({cells[3]})"
    assert (tmp_path / f"{task}.svg").read_text().startswith("<svg")
    assert [r["seed"] for r in json.loads((EXAMPLE / f"{task}.json").read_text())] == seeds


@pytest.mark.slow
def test_the_script_runs_every_condition(tmp_path):
    result = subprocess.run([sys.executable, str(EXAMPLE / "run.py"), "--task", "addition", "--seeds", "0",
                             "--steps", "1", "--sizes", "12", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "addition.json").read_text())[0]
    assert set(saved) == {"task", "seed", "steps", "base", "rl_12", "sft_12", "sft_rl_12", "sft_gentle_12",
                          "sft_gentle_rl_12"}
    assert all(0.0 <= v <= 1.0 for k, v in saved.items() if k not in ("task", "seed", "steps"))
