"""`rftkit.precision: bf16` through the CLI (on CPU, where it runs, slowly): the model is held in
bf16 and the optimizer steps fp32 masters (tests/unit/train/test_master_weights.py checks the
arithmetic); checkpoints carry the masters, so a killed job resumes to the same metrics as an
uninterrupted one, and the exported model is a bf16 Hugging Face directory."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers import kill_and_resume, metrics_of, run_cli, start_training, write_job

STEPS = 4


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory, tiny_dir):
    tmp_path = tmp_path_factory.mktemp("bf16")
    job = write_job(tmp_path, tiny_dir, steps=STEPS, precision="bf16")
    result = run_cli("train", job, "--out", tmp_path / "run", "--force")
    assert result.returncode == 0, result.stderr
    return job, tmp_path / "run", result


def masters_of(checkpoint):
    return torch.load(checkpoint / "trainer.pt", weights_only=False)["optimizer"]["master_weights"]


def test_a_bf16_job_steps_fp32_masters_and_exports_bf16(bf16_run):
    _, run, result = bf16_run
    assert "precision: the model held in bfloat16, the optimizer stepping fp32 master weights" in result.stderr
    assert "bf16 arithmetic is several times slower than fp32 on most CPUs" in result.stderr
    assert json.loads((run / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    assert [row["step"] for row in metrics_of(run)] == list(range(1, STEPS + 1))
    checkpoint = run / f"checkpoint-{STEPS}"
    masters = masters_of(checkpoint)
    weights = load_file(checkpoint / "model" / "model.safetensors")
    assert all(m.dtype == torch.float32 for m in masters)
    assert all(w.dtype == torch.bfloat16 for w in weights.values())
    # the saved bf16 weights are the masters rounded, and the masters hold more than that
    assert {tuple(m.shape) for m in masters} == {tuple(w.shape) for w in weights.values()}
    assert any(not torch.equal(m, m.bfloat16().float()) for m in masters)


@pytest.mark.slow
def test_a_killed_bf16_job_resumes_from_the_exact_masters(tmp_path, bf16_run):
    job, whole, _ = bf16_run
    run = tmp_path / "run"
    kill_and_resume(start_training(job, run, reach=2), job, run)
    assert metrics_of(run) == metrics_of(whole)
    # resumed from rounded weights, the masters would differ by bf16's rounding from here on
    last = f"checkpoint-{STEPS}"
    for resumed_master, whole_master in zip(masters_of(run / last), masters_of(whole / last)):
        assert torch.equal(resumed_master, whole_master)


@pytest.mark.slow
def test_two_ranks_sum_their_gradients_into_fp32_masters_as_one_process_does(tmp_path, tiny_dir, bf16_run):
    """Under --nproc 2 the hand all-reduce sums the masters' fp32 gradients: the first step
    (sampled from the same weights) matches one process's to bf16's arithmetic."""
    _, whole, _ = bf16_run
    job = write_job(tmp_path, tiny_dir, steps=STEPS, precision="bf16")
    done = run_cli("train", job, "--out", tmp_path / "run", "--force", "--nproc", "2")
    assert done.returncode == 0, done.stderr
    assert "the optimizer stepping fp32 master weights" in done.stderr
    first, theirs = metrics_of(tmp_path / "run")[0], metrics_of(whole)[0]
    assert first["train_reward_mean"] == theirs["train_reward_mean"]
    assert first["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-2)
