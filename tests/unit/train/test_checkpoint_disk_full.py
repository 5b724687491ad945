"""A full disk during a checkpoint, for real: `rftkit train` on a small tmpfs.

The tmpfs is mounted in a user and mount namespace (`unshare -rm`), so no root is needed where
the kernel allows unprivileged namespaces; the test skips where it cannot mount one. A driver
inside the namespace trains 2 steps, fills the disk but for a little less than one checkpoint,
resumes for 2 more steps (checkpoint-3 cannot be written), then frees the space and resumes again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_jsonl

DRIVER = r'''
import json, os, shutil, subprocess, sys
from pathlib import Path

mount, work = Path(sys.argv[1]), Path(sys.argv[2])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
run = mount / "run"
env = {**os.environ, "PYTHONWARNINGS": "ignore"}

def train(job, *flags):
    done = subprocess.run([sys.executable, "-m", "rftkit.cli", "train", str(work / job), "--out", str(run), *flags],
                          capture_output=True, text=True, env=env, timeout=300)
    return {"rc": done.returncode, "stderr": done.stderr}

def listing():
    return sorted(p.name for p in run.iterdir())

result = {"first": train("job2.yaml", "--force")}
checkpoint_bytes = sum(p.stat().st_size for p in (run / "checkpoint-2").rglob("*") if p.is_file())
with open(mount / "filler", "wb") as handle:  # leave 4 MB: room for logs, not for a checkpoint
    handle.write(b"\0" * (shutil.disk_usage(mount).free - (4 << 20)))
result["checkpoint_bytes"] = checkpoint_bytes
result["full"] = train("job4.yaml", "--resume")
result["after_full"] = listing()
result["events_after_full"] = (run / "events.jsonl").read_text()
(mount / "filler").unlink()
result["resumed"] = train("job4.yaml", "--resume")
result["after_resume"] = listing()
result["summary"] = json.loads((run / "summary.json").read_text())
print(json.dumps(result))
'''


def can_mount_tmpfs(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {where}"],
                           capture_output=True)
    return probe.returncode == 0


def write_job(tmp_path: Path, model: Path, steps: int) -> None:
    job = {
        "model": str(model), "training_file": str(tmp_path / "train.jsonl"),
        "validation_file": str(tmp_path / "valid.jsonl"), "seed": 3,
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": {"type": "string_check", "name": "has a", "input": "{{ sample.output_text }}",
                       "reference": "a", "operation": "like"},
            "hyperparameters": {"batch_size": 4, "eval_interval": 2}}},
        "rftkit": {"group_size": 4, "learning_rate": 1e-3, "max_steps": steps, "lengths": {"max_completion_tokens": 8},
                   "eval": {"k": 2, "baseline": False}, "checkpoints": {"interval": 1, "keep_last": 1, "keep_best": 0}},
    }
    (tmp_path / f"job{steps}.yaml").write_text(json.dumps(job))


@pytest.mark.slow  # three `rftkit train` processes: about 2 minutes on a shared CPU
def test_a_full_disk_leaves_no_partial_checkpoint_and_resume_continues(tmp_path, tiny_dir):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if not can_mount_tmpfs(mount):
        pytest.skip("cannot mount a tmpfs here (no unshare, or user namespaces are not allowed)")
    prompts = [{"messages": [{"role": "user", "content": f"say something with an a, take {i}"}]} for i in range(6)]
    write_jsonl(tmp_path / "train.jsonl", prompts[:4])
    write_jsonl(tmp_path / "valid.jsonl", prompts[4:])
    for steps in (2, 4):
        write_job(tmp_path, tiny_dir, steps)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    done = subprocess.run(["unshare", "-rm", sys.executable, str(driver), str(mount), str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["first"]["rc"] == 0, result["first"]["stderr"][-2000:]
    assert result["checkpoint_bytes"] > 4 << 20  # so the 4 MB left cannot hold one

    full = result["full"]
    assert full["rc"] == 2, full["stderr"][-2000:]
    assert "Traceback" not in full["stderr"]
    assert "checkpoint-3 could not be written (No space left on device)" in full["stderr"]
    assert "the last good checkpoint is checkpoint-2" in full["stderr"]
    # nothing partial: no checkpoint-3, no temporary directory; checkpoint-2 is whole
    assert [n for n in result["after_full"] if "checkpoint" in n] == ["checkpoint-2"]
    error = [json.loads(line) for line in result["events_after_full"].splitlines()][-1]
    assert error["level"] == "error" and "checkpoint-3 could not be written" in error["message"]

    resumed = result["resumed"]
    assert resumed["rc"] == 0, resumed["stderr"][-2000:]
    assert "resumed from" in resumed["stderr"] and "step 2" in resumed["stderr"]
    assert result["summary"]["status"] == "succeeded" and result["summary"]["steps"] == 4
    assert [n for n in result["after_resume"] if "checkpoint" in n] == ["checkpoint-4"]
