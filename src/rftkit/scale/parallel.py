"""The parallel seam: this process's rank among N data-parallel ranks, and the few collectives
the trainer needs.

    parallel = Parallel.from_environment()   # RANK / WORLD_SIZE as torchrun, Ray or `--nproc` set them
    mine = parallel.share(len(prompts))       # a contiguous range: whole groups stay on one rank
    groups = parallel.gather(my_groups)       # every rank's, in rank order, on every rank

How a step divides (`train/rl.py`): every rank draws the same batch of prompts (the data order
is seeded alike), samples and grades its share, and then holds the whole batch's graded groups,
so advantages, dynamic sampling, metrics and monitors come out the same on every rank. The
update splits the rows that carry a gradient across ranks; each rank's loss is divided by the
whole mini-batch's token and row counts, and `all_reduce_gradients` sums the ranks' gradients,
so N ranks take the optimizer step one process would (verl's `agg_loss` is the reference for
global denominators). Gradients are summed by hand, not by DDP's hooks: a rank with no row to
train adds zeros instead of leaving its peers waiting in an all-reduce it never joins.

A single process is `Parallel()` (rank 0 of 1): every collective is then the identity.
"""

from __future__ import annotations

import functools

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from rftkit.errors import RftkitError

COLLECTIVE_TIMEOUT_S = 600  # a peer silent this long fails the job (RFTKIT_COLLECTIVE_TIMEOUT_S overrides)


@dataclass(frozen=True)
class Parallel:
    """This process's place: `rank` of `world_size` data-parallel ranks."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where collective tensors live: cpu under gloo, cuda under NCCL

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run directory and shows progress; the others only compute."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls, device: str = "cpu") -> "Parallel":
        """Join the process group the launcher described in the environment (torchrun's
        variables: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); a single process
        when WORLD_SIZE is unset or 1. gloo on CPU, NCCL on CUDA."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        import torch.distributed as dist

        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if on_cuda:
            if local_rank >= torch.cuda.device_count():
                raise RftkitError(f"rank {rank} of {world_size} runs on GPU {local_rank} (its LOCAL_RANK), and this "
                                  f"machine shows {torch.cuda.device_count()} GPU(s)",
                                  fix="start one rank per GPU (torchrun --nproc-per-node at most the GPUs), or set "
                                      "rftkit.device: cpu")
            torch.cuda.set_device(local_rank)  # "cuda" then means this rank's own GPU
        if not dist.is_initialized():
            backend = "nccl" if on_cuda else "gloo"
            timeout = float(os.environ.get("RFTKIT_COLLECTIVE_TIMEOUT_S", COLLECTIVE_TIMEOUT_S))
            try:
                dist.init_process_group(backend, rank=rank, world_size=world_size,
                                        timeout=timedelta(seconds=timeout))
            except (RuntimeError, ValueError) as err:
                raise RftkitError(f"rank {rank} of {world_size} could not join the process group at "
                                  f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}: {err}",
                                  fix="start every rank with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE "
                                      "(torchrun or `rftkit train --nproc N` sets them)") from None
        return cls(rank, world_size, local_rank, "cuda" if on_cuda else "cpu")

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    # ------------------------------------------------------------------ dividing work

    def share(self, count: int) -> range:
        """This rank's contiguous share of `count` items; shares differ by at most one, in rank order.

        >>> [list(Parallel(r, 2).share(5)) for r in range(2)]
        [[0, 1, 2], [3, 4]]
        """
        base, extra = divmod(count, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (self.rank < extra))

    # ------------------------------------------------------------------ collectives

    def gather(self, items: list) -> list:
        """Every rank's `items` concatenated in rank order, on every rank (picklable items)."""
        if not self.active:
            return list(items)
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, list(items))
        return [item for part in parts for item in part]

    def any(self, flag: bool) -> bool:
        """Whether any rank says True: ranks agree on stopping before they part ways."""
        if not self.active:
            return flag
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def most(self, value: int) -> int:
        """The largest of the ranks' `value`s, on every rank."""
        if not self.active:
            return value
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def barrier(self) -> None:
        """Wait until every rank is here (before reading files rank 0 wrote)."""
        self.any(False)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over the ranks, in place (it is a CPU tensor under gloo, or on the device)."""
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def all_reduce_gradients(self, parameters: list[torch.nn.Parameter], extras: list[float]) -> list[float]:
        """Sum every trainable parameter's gradient over the ranks (one flat buffer: one
        collective per optimizer step), and `extras` (scalars such as the loss) with them.
        A parameter without a gradient on this rank counts as zeros."""
        if not self.active:
            return list(extras)
        flat = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in parameters]
        device = parameters[0].device if parameters else torch.device("cpu")
        # the widest gradient's dtype: a bf16-pure body beside PPO's fp32 value head sums in fp32
        dtype = functools.reduce(torch.promote_types, (f.dtype for f in flat), flat[0].dtype) if flat else torch.float32
        wide = dtype.itemsize >= 4  # the extras ride in the buffer; beside bf16 gradients, in fp64 on their own
        scalars = torch.tensor(extras, dtype=dtype if wide else torch.float64, device=device)
        buffer = torch.cat([*flat, scalars] if wide else flat)
        self.sum_(buffer)
        at = 0
        for parameter in parameters:
            size = parameter.numel()
            parameter.grad = buffer[at:at + size].view_as(parameter).to(parameter.dtype, copy=True)
            at += size
        return buffer[at:].tolist() if wide else self.sum_(scalars).tolist()


SINGLE = Parallel()
