"""Data-parallel ranks compute what one process computes: real gloo process groups on CPU.

Each comparison runs `step_worker.py` once as a single process and once as 2 ranks (the
environment `rftkit train --nproc` gives them), and compares the sampled tokens, the rewards,
the update's loss and statistics, and every parameter's gradient.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rftkit.scale.launch import free_port, rank_environment
from rftkit.scale.parallel import Parallel

WORKER = Path(__file__).with_name("step_worker.py")


def run_ranks(out: Path, nproc: int, config: dict) -> list[dict]:
    out.mkdir(parents=True)
    port = free_port()
    environments = [rank_environment(r, nproc, port, cores=nproc) for r in range(nproc)] if nproc > 1 else [None]
    ranks = [subprocess.Popen([sys.executable, str(WORKER), str(out), json.dumps(config)], env=env)
             for env in environments]
    assert [p.wait(timeout=240) for p in ranks] == [0] * len(ranks)
    return [torch.load(out / f"rank-{r}.pt", weights_only=False) for r in range(nproc)]


CONFIGS = {
    "grpo": {},
    "lora, kl, two epochs of two mini-batches": {"lora": True, "rftkit": {
        "kl": {"coef": 0.05}, "update": {"epochs": 2, "mini_batches": 2}}},
    # one epoch: after several, Adam's steps carry the float rounding of summing in another order
    "ppo with a critic": {"rftkit": {"algorithm": "ppo", "ppo": {"epochs": 1}}},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_ranks_compute_the_update_of_one(tmp_path, name):
    config = CONFIGS[name]
    (one,) = run_ranks(tmp_path / "one", 1, config)
    ranks = run_ranks(tmp_path / "two", 2, config)
    for rank in ranks:
        assert rank["tokens"] == one["tokens"]  # the same samples, drawn half on each rank
        assert rank["rewards"] == one["rewards"]
        assert rank["stats"].keys() == one["stats"].keys()
        for key, value in one["stats"].items():
            assert rank["stats"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        for parameter, grad in one["grads"].items():
            torch.testing.assert_close(rank["grads"][parameter], grad, rtol=1e-5, atol=1e-6)
    assert one["stats"]["grad_norm"] > 0  # the batch did carry a signal
    # every rank holds the same gradient, so their optimizer steps keep the replicas equal
    assert all(torch.equal(ranks[0]["grads"][p], ranks[1]["grads"][p]) for p in one["grads"])


def test_bf16_pure_ppo_sums_a_bf16_body_and_its_fp32_value_head(tmp_path):
    """Under bf16-pure the policy and the critic's body train in bf16 and the value head in fp32:
    the ranks' one buffer sums them all (in fp32) and gives each gradient back in its own dtype.
    (bf16 sampling rounds differently at another batch size, so 2 ranks are not compared with 1.)"""
    config = {"dtype": "bfloat16", "more_steps": 1,
              "rftkit": {"algorithm": "ppo", "ppo": {"epochs": 1}, "precision": "bf16-pure"}}
    ranks = run_ranks(tmp_path / "two", 2, config)
    assert ranks[0]["tokens"] == ranks[1]["tokens"]
    for parameter, grad in ranks[0]["grads"].items():
        assert grad.dtype == torch.bfloat16 and torch.equal(grad, ranks[1]["grads"][parameter])
    assert ranks[0]["stats"]["grad_norm"] > 0
    assert ranks[0]["steps"][0]["value_loss"] == ranks[1]["steps"][0]["value_loss"] > 0


def test_three_steps_give_the_same_metrics(tmp_path):
    (one,) = run_ranks(tmp_path / "one", 1, {"more_steps": 2})
    ranks = run_ranks(tmp_path / "two", 2, {"more_steps": 2})
    for rank in ranks:
        for mine, theirs in zip(rank["steps"], one["steps"]):
            for key, value in theirs.items():
                if key.startswith("time_") or key in ("samples_per_s", "tokens_per_s"):
                    continue
                assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_shares_cover_every_item_once_in_order():
    for count in range(0, 12):
        for world in range(1, 5):
            shares = [Parallel(r, world).share(count) for r in range(world)]
            assert [i for s in shares for i in s] == list(range(count))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
