"""`rftkit.fsdp.enabled` under `--nproc 2`: two gloo ranks that shard the training state (FSDP2).

The sharded job writes the metrics of the same job in one process (loss, gradient norm and
rewards, to float rounding); a sharded job paused mid-run and resumed (the optimizer's state
gathered into the checkpoint, then scattered again) ends where the uninterrupted one does; LoRA
is refused with the fix. CPU and gloo here; the same code runs NCCL on GPUs (tests/gpu).
"""

import signal

from helpers import assert_metrics_close, metrics_of, run_cli, start_training, write_job


def test_two_sharded_ranks_train_as_one_process_does(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, steps=3, fsdp={"enabled": True})
    one = run_cli("train", job, "--out", tmp_path / "one", "--force")
    two = run_cli("train", job, "--out", tmp_path / "two", "--force", "--nproc", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert "rftkit.fsdp is on, but the job runs in one process" in one.stderr
    assert "on 2 ranks (FSDP: training state sharded)" in two.stderr
    rows = metrics_of(tmp_path / "two")
    assert any(row.get("grad_norm", 0) > 0 for row in rows)  # a step that learned, sharded
    assert_metrics_close(rows, metrics_of(tmp_path / "one"))
    for name in ("final.json", "model/model.safetensors", "checkpoint-3/state.json"):
        assert (tmp_path / "two" / name).exists(), name
    assert (tmp_path / "two" / "final.json").read_text() == (tmp_path / "one" / "final.json").read_text()


def test_a_paused_sharded_job_resumes_where_the_uninterrupted_one_ends(tmp_path, tiny_dir):
    steps = 12
    job = write_job(tmp_path, tiny_dir, steps=steps, fsdp={"enabled": True})
    whole = run_cli("train", job, "--out", tmp_path / "whole", "--force", "--nproc", "2")
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / "run"
    launcher = start_training(job, run, "--nproc", "2")
    launcher.send_signal(signal.SIGTERM)  # every rank pauses after its step, with a checkpoint
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 3, stderr
    paused_at = len(metrics_of(run))
    assert 2 <= paused_at < steps, paused_at
    resumed = run_cli("train", job, "--out", run, "--resume", "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert_metrics_close(metrics_of(run), metrics_of(tmp_path / "whole"))


def test_fsdp_with_lora_is_refused_with_the_fix(tmp_path, tiny_dir):
    job = write_job(tmp_path, tiny_dir, steps=1, fsdp={"enabled": True}, lora={"enabled": True})
    result = run_cli("train", job, "--out", tmp_path / "run", "--force", "--nproc", "2")
    assert result.returncode != 0
    assert "rftkit.fsdp shards a full fine-tune; this job trains a LoRA adapter" in result.stderr
    assert "turn rftkit.fsdp off under LoRA" in result.stderr


def test_bf16_mixed_precision_trains_close_to_fp32(tmp_path, tiny_dir):
    """bf16 arithmetic over fp32 master shards (tests/unit/scale/test_fsdp_precision.py checks
    the dtypes and the master weights): the job runs, and its first step, sampled from the same
    weights, computes the fp32 step's loss and gradient to bf16's precision."""
    import pytest

    runs = {}
    for name, fsdp in (("fp32", {"enabled": True}), ("bf16", {"enabled": True, "mixed_precision": "bf16"})):
        (tmp_path / name).mkdir()
        job = write_job(tmp_path / name, tiny_dir, steps=2, fsdp=fsdp)
        done = run_cli("train", job, "--out", tmp_path / name / "run", "--force", "--nproc", "2")
        assert done.returncode == 0, done.stderr
        runs[name] = metrics_of(tmp_path / name / "run")
    assert "(FSDP: training state sharded, bf16 compute over fp32 master weights)" in done.stderr
    first, reference = runs["bf16"][0], runs["fp32"][0]
    assert first["train_reward_mean"] == reference["train_reward_mean"]
    assert first["grad_norm"] == pytest.approx(reference["grad_norm"], rel=0.05)
    assert first["grad_norm"] != reference["grad_norm"]  # the arithmetic was bf16's
    assert [row["step"] for row in runs["bf16"]] == [1, 2]
