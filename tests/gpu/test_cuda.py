"""The GPU paths: sampling, a training step and the vLLM engine on CUDA.

Every test here skips without a CUDA GPU (CI has none); run them where one is:

    python -m pytest -q tests/gpu          # vLLM's tests also need `pip install 'rftkit[vllm]'`
    bash .ci/gpu                           # the same, on a machine without PyPI (`make gpu-wheels` here first)

What they pin down: a CPU `torch.Generator` drives sampling on a CUDA model (uniforms are drawn
on the CPU, so one seed gives the same draws on every device); rewards built on the CPU meet the
CUDA masks of the batch; a bf16 model trains in bf16 with fp32 log-probs, its optimizer
stepping fp32 master weights (rftkit.precision auto; bf16-pure steps them in place); the lean forward and
the model's own agree on CUDA; vLLM samples, takes new weights every step, and its log-probs
agree with the trainer's closely enough for the importance correction to stay near 1; whole
jobs run through `rftkit train` on the GPU, synchronous and one step off-policy; ranks take one
GPU each, and more ranks than GPUs are refused with the fix.
"""

import importlib.util

import pytest
import torch
from helpers import metrics_of, run_cli, write_job

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")


def tiny_on(device, dtype=torch.float32, seed=0):
    from rftkit.models.tiny import build_tiny

    model, tokenizer = build_tiny("tiny", seed=seed)
    return model.to(device=device, dtype=dtype), tokenizer


def prompts(tokenizer):
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("12+30=", "7+8=", "123+456=")]


@pytest.mark.parametrize("name", ["hf", "lean"])
def test_sampling_on_cuda_with_a_cpu_generator_is_reproducible(name):
    from rftkit.rollout import local_engine
    from rftkit.types import SamplingParams

    model, tokenizer = tiny_on(CUDA)
    engine = local_engine(model, tokenizer, name)
    runs = [engine.generate(prompts(tokenizer), SamplingParams(16), n=4, generator=torch.Generator().manual_seed(3))
            for _ in range(2)]
    assert [[c.token_ids for c in g] for g in runs[0]] == [[c.token_ids for c in g] for g in runs[1]]


def test_hf_and_lean_agree_on_cuda():
    from rftkit.rollout import local_engine
    from rftkit.types import SamplingParams

    model, tokenizer = tiny_on(CUDA)
    greedy = SamplingParams(16, temperature=0.0)
    hf, lean = (local_engine(model, tokenizer, name).generate(prompts(tokenizer), greedy) for name in ("hf", "lean"))
    for (a,), (b,) in zip(hf, lean):
        assert a.token_ids == b.token_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_training_step_on_cuda(dtype):
    from rftkit.config import parse_job
    from rftkit.graders import build_grader
    from rftkit.resolved import resolve_reinforcement
    from rftkit.train.rl import RLTrainer
    from rftkit.types import Example

    grader = {"type": "string_check", "name": "a seven", "input": "{{ sample.output_text }}", "reference": "7",
              "operation": "like"}
    spec = parse_job({"model": "unused", "training_file": "unused", "seed": 0, "method": {
        "type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": {"batch_size": 4}}},
        "rftkit": {"group_size": 8, "learning_rate": 1e-3, "max_steps": 2, "kl": {"coef": 0.05},
                   "lengths": {"max_completion_tokens": 8}}})
    examples = [Example([{"role": "user", "content": f"q{i}"}], {}) for i in range(8)]
    model, tokenizer = tiny_on(CUDA, dtype)
    trainer = RLTrainer(model, tokenizer, build_grader(grader), examples, resolve_reinforcement(spec, len(examples), parameters=None))
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        metrics = trainer.step().metrics
    assert torch.isfinite(torch.tensor(metrics["loss"])) and metrics["kl"] >= 0
    assert next(model.parameters()).dtype == dtype
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    masters = getattr(trainer.optimizer, "master_weights", None)
    assert (masters is not None) == (dtype == torch.bfloat16)
    if masters is not None:
        for weight, master in masters.pairs:
            assert master.dtype == torch.float32 and master.device.type == "cuda"
            assert torch.equal(weight, master.to(dtype))


def test_sampling_logprobs_match_the_trainer_on_cuda():
    from rftkit.rollout import local_engine
    from rftkit.train.logprobs import completion_logprobs, pack
    from rftkit.types import SamplingParams, Trajectory

    model, tokenizer = tiny_on(CUDA)
    drawn = local_engine(model, tokenizer, "hf").generate(prompts(tokenizer), SamplingParams(12, 0.8), n=2,
                                                          generator=torch.Generator().manual_seed(0))
    trajectories = [Trajectory.single_turn(p, c.token_ids, c.logprobs, c.finish_reason)
                    for p, group in zip(prompts(tokenizer), drawn) for c in group]
    batch, sampled = pack(trajectories, [i // 2 for i in range(len(trajectories))], tokenizer.pad_token_id, CUDA)
    with torch.no_grad():
        recomputed = completion_logprobs(model, batch, 0.8).logprobs_NC
    torch.testing.assert_close(recomputed, sampled, atol=1e-3, rtol=0)


needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs `pip install 'rftkit[vllm]'`")


@needs_vllm
@pytest.mark.parametrize("lora", [False, True])
def test_vllm_samples_follows_the_trainers_weights_and_agrees_on_logprobs(tiny_dir, tmp_path, lora):
    from rftkit.config import EngineOptions, LoraOptions
    from rftkit.models.load import load_policy, wrap_lora
    from rftkit.rollout.engine import EngineContext, build_engine
    from rftkit.train.logprobs import completion_logprobs, pack
    from rftkit.types import SamplingParams, Trajectory

    model, tokenizer = load_policy(str(tiny_dir), "cuda")
    options = LoraOptions(enabled=lora, r=8, alpha=16)
    if lora:
        model = wrap_lora(model, options)
    engine = build_engine("vllm", EngineContext(model, tokenizer, str(tiny_dir),
                                                EngineOptions(gpu_memory_utilization=0.2, max_model_len=256),
                                                tmp_path, options))
    try:
        engine.update_weights(model, 0)
        params = SamplingParams(12, temperature=1.0)
        drawn = engine.generate(prompts(tokenizer), params, n=4, generator=torch.Generator().manual_seed(0))
        assert [len(g) for g in drawn] == [4, 4, 4] and all(c.policy_version == 0 for g in drawn for c in g)
        trajectories = [Trajectory.single_turn(p, c.token_ids, c.logprobs, c.finish_reason)
                        for p, group in zip(prompts(tokenizer), drawn) for c in group]
        batch, sampled = pack(trajectories, [i // 4 for i in range(12)], tokenizer.pad_token_id, CUDA)
        with torch.no_grad():
            recomputed = completion_logprobs(model, batch, 1.0).logprobs_NC
        mask = batch.loss_mask_NC.bool()
        assert (recomputed - sampled)[mask].abs().mean() < 0.05  # the importance ratio stays near 1
        with torch.no_grad():  # new weights: greedy answers must follow them
            for name, parameter in model.named_parameters():
                if parameter.requires_grad and ("lora_B" in name or not lora):
                    parameter.add_(torch.randn_like(parameter) * 0.5)
        greedy = SamplingParams(8, temperature=0.0)
        before = engine.generate(prompts(tokenizer), greedy)
        engine.update_weights(model, 1)
        after = engine.generate(prompts(tokenizer), greedy)
        expected = build_engine("hf", EngineContext(model, tokenizer)).generate(prompts(tokenizer), greedy)
        assert [g[0].token_ids for g in after] == [g[0].token_ids for g in expected]
        assert [g[0].token_ids for g in before] != [g[0].token_ids for g in after]
        assert all(g[0].policy_version == 1 for g in after)
    finally:
        engine.close()


def cuda_job(tmp_path, model_dir, **rftkit_extra):
    """tests/helpers.py's three-step job (rewards for an 'a'), on the GPU, without the baseline check."""
    return write_job(tmp_path, model_dir, steps=3, device="cuda", eval={"baseline": False}, **rftkit_extra)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (NCCL: one rank a GPU)")
@pytest.mark.parametrize("fsdp", [{"enabled": False}, {"enabled": True},
                                  {"enabled": True, "mixed_precision": "bf16"}], ids=["ddp", "fsdp", "fsdp-bf16"])
def test_two_ranks_on_two_gpus_train_as_one_gpu_does(tiny_dir, tmp_path, fsdp):
    job = cuda_job(tmp_path, tiny_dir, fsdp=fsdp)
    runs = {}
    for name, extra in (("one", []), ("two", ["--nproc", "2"])):
        done = run_cli("train", job, "--out", tmp_path / name, *extra, timeout=600)
        assert done.returncode == 0, done.stderr
        runs[name] = metrics_of(tmp_path / name)
    assert [r["step"] for r in runs["two"]] == [1, 2, 3]
    # the first step samples from the same weights; NCCL sums in its own order, so its update is
    # close to one GPU's, not equal, and later samples may part ways
    first, theirs = runs["two"][0], runs["one"][0]
    assert first["train_reward_mean"] == theirs["train_reward_mean"]
    bf16 = fsdp.get("mixed_precision") == "bf16"  # bf16 arithmetic against fp32: the loss is near 0
    close = 5e-2 if bf16 else 1e-3
    assert first["loss"] == pytest.approx(theirs["loss"], rel=close, abs=1e-3 if bf16 else 1e-5)
    assert first["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=close)


@pytest.mark.parametrize("staleness", [0, 1])
def test_a_job_trains_on_cuda_through_the_cli_and_exports_the_model(tiny_dir, tmp_path, staleness):
    """The whole `rftkit train` on a GPU, synchronous and one step off-policy (the in-process
    engine samples from its own copy of the policy on the same GPU while the update runs)."""
    job = cuda_job(tmp_path, tiny_dir, asynchronous={"max_staleness": staleness})
    done = run_cli("train", job, "--out", tmp_path / "run", timeout=600)
    assert done.returncode == 0, done.stderr
    rows = metrics_of(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["loss"] == r["loss"] for r in rows)  # not NaN
    if staleness:
        assert max(r["staleness_mean"] for r in rows) <= 1
    from rftkit.models.load import load_policy

    exported, _ = load_policy(str(tmp_path / "run" / "model"), "cpu")
    assert next(exported.parameters()).device.type == "cpu"


@pytest.mark.parametrize("precision", ["auto", "bf16-pure"])
def test_a_bf16_checkpoint_trains_on_cuda_as_rftkit_precision_says(tiny_dir, tmp_path, precision):
    """A bf16 checkpoint on a GPU stays bf16 for sampling and the passes; under `auto` the
    optimizer steps fp32 masters, which checkpoints carry; `bf16-pure` steps the weights in place."""
    from rftkit.models.load import load_policy, save_policy

    model, tokenizer = load_policy(str(tiny_dir), "cpu")
    bf16_dir = save_policy(model.bfloat16(), tokenizer, tmp_path / "bf16")
    done = run_cli("train", cuda_job(tmp_path, bf16_dir, precision=precision), "--out", tmp_path / "run", timeout=600)
    assert done.returncode == 0, done.stderr
    trainer = torch.load(tmp_path / "run" / "checkpoint-3" / "trainer.pt", weights_only=False, map_location="cpu")
    if precision == "auto":
        assert "precision: the model held in bfloat16, the optimizer stepping fp32 master weights" in done.stderr
        assert all(m.dtype == torch.float32 for m in trainer["optimizer"]["master_weights"])
    else:
        assert "its trained weights, gradients and optimizer state in bfloat16" in done.stderr
        assert "master_weights" not in trainer["optimizer"]
    exported, _ = load_policy(str(tmp_path / "run" / "model"), "cpu", precision="bf16")
    assert next(exported.parameters()).dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.device_count() != 1, reason="for a machine of one GPU")
def test_ranks_beyond_the_gpus_fail_with_the_fix(tiny_dir, tmp_path):
    """`--nproc 2` on one GPU is refused before any rank starts; torchrun's second rank on it says why."""
    import subprocess
    import sys

    job = cuda_job(tmp_path, tiny_dir)
    refused = run_cli("train", job, "--out", tmp_path / "run", "--nproc", "2")
    assert refused.returncode == 2 and "needs 2 GPUs (one a rank, under NCCL)" in refused.stderr, refused.stderr
    torchrun = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
                               "rftkit.cli", "train", str(job), "--out", str(tmp_path / "run2")],
                              capture_output=True, text=True, timeout=300)
    assert torchrun.returncode != 0
    assert "runs on GPU 1 (its LOCAL_RANK), and this machine shows 1 GPU(s)" in torchrun.stderr + torchrun.stdout
