"""One rank of `test_fsdp_precision.py` (a script: each rank is its own process).

    python precision_worker.py OUT WHOLE_DTYPE      # RANK / WORLD_SIZE / MASTER_* from the environment

Shards the tiny model (whole copy in WHOLE_DTYPE: float32 or bfloat16) with
`mixed_precision: bf16`, takes one optimizer step at a learning rate too small for bf16 to
represent, and saves to OUT/rank-R.pt what the test checks: the dtypes of the shards, the
forward's arithmetic and the optimizer's state, the master weights before and after the step,
the whole model after `publish`, and the master weights a fresh replica loads back.
"""

import sys
from pathlib import Path

import torch

from rftkit.models.tiny import build_tiny
from rftkit.scale.fsdp import ShardedPolicy
from rftkit.scale.parallel import Parallel


def whole_master(sharded: ShardedPolicy) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(sharded.module, options=StateDictOptions(full_state_dict=True))  # on every rank


def main(out: Path, whole_dtype: str) -> None:
    parallel = Parallel.from_environment()
    torch.manual_seed(0)
    model, _ = build_tiny("tiny", seed=0)
    model.to(getattr(torch, whole_dtype))
    sharded = ShardedPolicy(model, parallel, "bf16")
    optimizer = torch.optim.AdamW(sharded.parameters(), lr=1e-6)  # Adam's first step moves each weight by ~lr
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]]) + parallel.rank
    logits = sharded.module(input_ids=ids).logits
    logits.float().logsumexp(-1).mean().backward()
    before = whole_master(sharded)
    optimizer.step()
    sharded.publish()
    master = sharded.master_state()  # rank 0 gets it all, and writes the checkpoint
    if parallel.is_main:
        torch.save(master, out / "trainer.pt")
    parallel.barrier()
    fresh = ShardedPolicy(model, parallel, "bf16")  # as resume makes it: from the whole model,
    fresh.load_master_state(torch.load(out / "trainer.pt", weights_only=False))  # then every rank reads the file
    state = next(iter(optimizer.state.values()))
    torch.save({
        "shard_dtypes": {str(p.dtype) for p in sharded.parameters()},
        "logits_dtype": str(logits.dtype),
        "optimizer_dtypes": {str(v.dtype) for v in state.values() if torch.is_tensor(v) and v.dim() > 0},
        "before": before, "after": whole_master(sharded), "master": master,
        "whole": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "reloaded": whole_master(fresh),
    }, out / f"rank-{parallel.rank}.pt")
    parallel.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
