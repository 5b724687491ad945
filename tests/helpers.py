"""Small helpers shared by tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def write_jsonl(path: Path, rows: list) -> Path:
    """Write rows (objects, or raw strings for broken lines) one per line."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real `rftkit` command in a fresh process."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "rftkit.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env,
    )


TIMING = ("time_", "samples_per_s", "tokens_per_s")


def write_job(tmp_path, model_dir, steps=6, **rftkit_extra):
    """A reinforcement job on `model_dir`: 8 training and 4 validation prompts, a reward for an 'a'."""
    prompts = [{"messages": [{"role": "user", "content": f"say something with an a, take {i}"}]} for i in range(12)]
    write_jsonl(tmp_path / "train.jsonl", prompts[:8])
    write_jsonl(tmp_path / "valid.jsonl", prompts[8:])
    rftkit = {"group_size": 4, "learning_rate": 1e-3, "max_steps": steps, "lengths": {"max_completion_tokens": 16},
              "eval": {"k": 4}, "checkpoints": {"interval": 1, "keep_last": 2}, **rftkit_extra}
    job = {
        "model": str(model_dir), "training_file": "train.jsonl", "validation_file": "valid.jsonl", "seed": 3,
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": {"type": "string_check", "name": "has a", "input": "{{ sample.output_text }}",
                       "reference": "a", "operation": "like"},
            "hyperparameters": {"batch_size": 4, "eval_interval": 2}}},
        "rftkit": rftkit,
    }
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(job))  # JSON is YAML
    return path


def metrics_of(run_dir):
    """metrics.jsonl's rows without their timings (which differ between runs)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.startswith(TIMING)} for row in rows]


def descendants_named(root: int, prefix: bytes) -> list[int]:
    """Processes under `root` whose command line starts with `prefix` (Ray names an actor's
    process `ray::ClassName`)."""
    from rftkit.jobs.supervisor import descendants

    found = []
    for pid in descendants(root):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(prefix):
                found.append(pid)
        except OSError:
            continue  # it ended meanwhile
    return found


def assert_metrics_close(mine: list[dict], theirs: list[dict]) -> None:
    """Two runs' metrics rows (`metrics_of`): the same steps and keys, floats to rounding."""
    import pytest

    assert [r["step"] for r in mine] == [r["step"] for r in theirs]
    for row, other in zip(mine, theirs):
        assert row.keys() == other.keys()
        for key, value in other.items():
            assert row[key] == (pytest.approx(value, rel=1e-5, abs=1e-6) if isinstance(value, float) else value), key


def start_training(job: Path, run: Path, *flags: str, env: dict | None = None, reach: int = 2) -> subprocess.Popen:
    """`rftkit train JOB --out RUN --force FLAGS` in the background, once it has written
    checkpoint-`reach` (its stderr is piped: read it with communicate)."""
    import time

    env = {**(os.environ if env is None else env), "PYTHONWARNINGS": "ignore"}
    launcher = subprocess.Popen([sys.executable, "-m", "rftkit.cli", "train", str(job), "--out", str(run), "--force",
                                 *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while time.time() < deadline and not (run / f"checkpoint-{reach}").exists():
        time.sleep(0.05)
    assert (run / f"checkpoint-{reach}").exists(), f"training did not reach step {reach}"
    return launcher


def kill_and_resume(process: subprocess.Popen, job: Path, run: Path) -> subprocess.CompletedProcess:
    """SIGKILL a background `rftkit train` (as a crash would: no clean-up runs), then `--resume` it
    to the end; the resumed run, which must have finished and said it resumed."""
    import signal

    process.send_signal(signal.SIGKILL)
    process.communicate()
    resumed = run_cli("train", job, "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    return resumed
