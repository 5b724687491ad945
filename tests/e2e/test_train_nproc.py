"""`rftkit train --nproc 2`: two real gloo ranks on this machine, against one process.

The same job run as 1 and as 2 ranks writes the same metrics (to float rounding); a rank
killed mid-run fails the job within seconds, with the last checkpoint kept, and `--resume`
with the same ranks finishes it; bad values of --nproc are refused before anything starts.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import assert_metrics_close, metrics_of, run_cli, start_training, write_job


def ranks_of(launcher: subprocess.Popen) -> dict[int, int]:
    """{rank: pid} of the launcher's children, read from their environment."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != launcher.pid:
            continue
        variables = dict(v.split(b"=", 1) for v in environ if b"=" in v)
        if b"RANK" in variables:
            found[int(variables[b"RANK"])] = int(entry.name)
    return found


def test_two_ranks_train_as_one_process_does(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, steps=3)
    one = run_cli("train", job, "--out", tmp_path / "one", "--force")
    two = run_cli("train", job, "--out", tmp_path / "two", "--force", "--nproc", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert "starting 2 data-parallel ranks" in two.stderr and "on 2 ranks" in two.stderr
    assert two.stderr.count("held-out evaluation") == 1  # rank 0 alone speaks
    assert_metrics_close(metrics_of(tmp_path / "two"), metrics_of(tmp_path / "one"))
    assert any("valid_reward_mean" in row for row in metrics_of(tmp_path / "two"))
    for name in ("baseline.json", "final.json", "report.html", "model/model.safetensors", "checkpoint-3/state.json"):
        assert (tmp_path / "two" / name).exists(), name


def test_a_killed_rank_fails_the_job_quickly_and_resume_finishes_it(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, steps=40)
    run = tmp_path / "run"
    launcher = start_training(job, run, "--nproc", "2")
    ranks = ranks_of(launcher)
    assert sorted(ranks) == [0, 1]
    os.kill(ranks[1], signal.SIGKILL)
    killed = time.time()
    _, stderr = launcher.communicate(timeout=60)
    assert time.time() - killed < 30  # the peer noticed (or was stopped): nothing hangs
    assert launcher.returncode != 0
    assert "rank 1 of 2 was killed by SIGKILL" in stderr and "--resume" in stderr
    assert not any(p for p in ranks.values() if Path(f"/proc/{p}").exists() and "zombie" not in
                   Path(f"/proc/{p}/status").read_text(errors="ignore"))

    steps_before = len(metrics_of(run))
    resumed = run_cli("train", job, "--out", run, "--resume", "--nproc", "2", timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    steps = [row["step"] for row in metrics_of(run)]
    assert steps == list(range(1, 41)) and steps_before < 40  # each step once, resumed mid-run


def test_bad_nproc_is_refused_with_the_fix(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, steps=2)
    too_many = run_cli("train", job, "--out", tmp_path / "run", "--nproc", "5")
    assert too_many.returncode == 2
    assert "--nproc 5 is more ranks than the 4 prompts of a step" in too_many.stderr
    assert "use --nproc 4 or fewer" in too_many.stderr
    assert not (tmp_path / "run").exists()
    vllm = run_cli("train", write_job(tmp_path, tiny_dir, steps=2, engine="vllm"), "--out", tmp_path / "run",
                   "--nproc", "2")
    assert vllm.returncode == 2 and "vllm samples in one process, and this job has 2 data-parallel ranks" in vllm.stderr
    assert "engine: openai" in vllm.stderr and not (tmp_path / "run").exists()


def test_ranks_on_gpus_the_machine_lacks_are_refused_before_any_starts(tmp_path, tiny_dir):
    import torch

    job = write_job(tmp_path, tiny_dir, steps=2, device="cuda")
    gpus = torch.cuda.device_count()
    if gpus + 1 > 4:
        pytest.skip("the job's 4 prompts a step would refuse the ranks first")
    refused = run_cli("train", job, "--out", tmp_path / "run", "--nproc", str(max(2, gpus + 1)))
    assert refused.returncode == 2, refused.stderr
    expected = "shows no GPU" if gpus == 0 else f"needs {gpus + 1} GPUs (one a rank, under NCCL)"
    assert expected in refused.stderr and "rftkit.device: cpu" in refused.stderr
    assert "starting" not in refused.stderr and not (tmp_path / "run").exists()
