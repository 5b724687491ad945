"""`rftkit.fsdp.mixed_precision: bf16` on two real gloo ranks: fp32 master shards and optimizer
state, bf16 arithmetic, small updates kept in the master weights, the whole model rounded from
them, and (when the whole model is bf16) master weights that a checkpoint carries and a resumed
replica gets back exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rftkit.scale.launch import free_port, rank_environment

WORKER = Path(__file__).with_name("precision_worker.py")


def run_ranks(out: Path, whole_dtype: str) -> list[dict]:
    out.mkdir(parents=True)
    port = free_port()
    ranks = [subprocess.Popen([sys.executable, str(WORKER), str(out), whole_dtype],
                              env=rank_environment(r, 2, port, cores=2)) for r in range(2)]
    assert [p.wait(timeout=240) for p in ranks] == [0, 0]
    return [torch.load(out / f"rank-{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("whole_dtype", ["float32", "bfloat16"])
def test_bf16_compute_over_fp32_master_shards(tmp_path, whole_dtype):
    ranks = run_ranks(tmp_path / "run", whole_dtype)
    for rank in ranks:
        assert rank["shard_dtypes"] == {"torch.float32"} and rank["optimizer_dtypes"] == {"torch.float32"}
        assert rank["logits_dtype"] == "torch.bfloat16"  # the forward gathered bf16 weights
    first = ranks[0]
    moved = [name for name in first["before"] if not torch.equal(first["before"][name], first["after"][name])]
    assert moved, "the step changed no master weight"
    for name, master in first["after"].items():  # every rank publishes the same whole model, rounded
        assert torch.equal(first["whole"][name], master.to(first["whole"][name].dtype)), name
        assert torch.equal(ranks[1]["whole"][name], first["whole"][name]), name
    if whole_dtype == "float32":
        assert first["master"] is None  # the whole model holds the masters exactly: nothing more to save
        return
    # a 1e-6 step is below bf16's resolution: the whole bf16 model cannot tell, the masters can
    lost = [n for n in moved if torch.equal(first["before"][n].to(torch.bfloat16), first["whole"][n])]
    assert lost, "expected updates too small for bf16"
    assert first["master"] is not None
    for name, master in first["master"].items():
        assert master.dtype == torch.float32 and torch.equal(master, first["after"][name]), name
        for rank in ranks:  # a replica made from the bf16 whole model gets the exact masters back
            assert torch.equal(rank["reloaded"][name], master), name
