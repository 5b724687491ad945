"""`rftkit train --ray`: a job on a real local Ray instance, against the same job in one process.

The job started with `--ray` (no address, no $RAY_ADDRESS: it starts a local Ray instance with 2
rollout actors and 1 grader actor) writes the metrics of the in-process run; an address nothing
answers at (`--ray-address`) is refused with one line before anything is loaded.
"""

import os

import pytest

from helpers import metrics_of, run_cli, write_job


def test_a_ray_job_trains_as_one_process_does(tmp_path, tiny_dir, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    job = write_job(tmp_path, tiny_dir, steps=2)
    one = run_cli("train", job, "--out", tmp_path / "one", "--force")
    on_ray = run_cli("train", job, "--out", tmp_path / "ray", "--force", "--ray")
    assert one.returncode == 0, one.stderr
    assert on_ray.returncode == 0, on_ray.stderr
    assert "on Ray: 2 rollout and 1 grader actors of 1 CPU each" in on_ray.stderr
    mine, theirs = metrics_of(tmp_path / "ray"), metrics_of(tmp_path / "one")
    assert [r["step"] for r in mine] == [1, 2]
    for row, other in zip(mine, theirs):
        assert row.keys() == other.keys()
        for key, value in other.items():
            assert row[key] == (pytest.approx(value, rel=1e-5, abs=1e-6) if isinstance(value, float) else value), key
    assert (tmp_path / "ray" / "baseline.json").read_text() == (tmp_path / "one" / "baseline.json").read_text()


def test_an_unreachable_ray_address_is_a_one_line_error(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, steps=1)
    result = run_cli("train", job, "--out", tmp_path / "run", "--ray-address", "127.0.0.1:1", timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    if "Ray, which is not installed" in result.stderr:  # a machine without the extra says so instead
        assert lines == [l for l in lines if "pip install 'rftkit[ray]'" in l]
        return
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Ray cluster at 127.0.0.1:1: "), lines
    assert not (tmp_path / "run").exists()  # refused before the run directory was made
