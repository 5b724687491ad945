"""`rftkit.fsdp.enabled`: the policy's training state sharded over the data-parallel ranks (FSDP2).

    sharded = ShardedPolicy(policy, parallel)         # policy: the whole model, on every rank
    optimizer = make_optimizer(sharded.parameters())   # 1/N of every trained tensor on this rank
    ... update_actor(sharded.module, optimizer, ...)   # forward/backward gather and scatter per block
    sharded.publish()                                  # the whole updated weights into `policy` again

A rank keeps two things: `module`, the policy sharded by torch's `fully_shard` (each decoder
block one FSDP unit, the embeddings and head with the root), which the update trains, so
that its weights, gradients and AdamW state take 1/N of their memory on each rank; and the
whole model it was made from, which every other phase reads as before (sampling, old and
reference log-probs, evaluation, checkpoints, the exported model). `publish` copies the
sharded weights into it after each optimizer step, gathering them (one collective). So the
whole weights are held once (4 bytes a parameter in fp32) and the training state 12/N; without
FSDP every rank holds 16.

Collectives: each FSDP unit all-gathers its weights in forward and reduce-scatters gradients in
backward, so every rank must run the same number of forward/backward passes in an optimizer
step. A rank with fewer micro-batches (or no row that carries a gradient) runs zero-loss
passes over one row until the counts agree (`ActorUpdate`). The reduce-scatter sums (gradient
divide factor 1), as the hand all-reduce does, because the loss is already divided by the
global token and row counts.

The optimizer's state in a checkpoint is gathered whole (rank 0 writes it, keyed by parameter
name), so a checkpoint reads back on any number of ranks that shard too; a run without FSDP
keys it by position, so a job resumes with the `rftkit.fsdp` setting it started with.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from rftkit.errors import RftkitError
from rftkit.scale.parallel import Parallel


def block_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated blocks: the children of its largest ModuleList (a decoder's layers)."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        return []
    return list(max(lists, key=len))


class ShardedPolicy:
    """The FSDP2-sharded training replica of `model`, beside `model` itself (see the module doc);
    `parallel` is active (more than one rank)."""

    def __init__(self, model: torch.nn.Module, parallel: Parallel):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import FSDPModule, fully_shard

        if hasattr(model, "disable_adapter"):
            raise RftkitError("rftkit.fsdp shards a full fine-tune; this job trains a LoRA adapter",
                              fix="turn rftkit.fsdp off under LoRA (the adapter's state is small already)")
        self.full = model
        mesh = init_device_mesh(parallel.device, (parallel.world_size,))
        self.module = copy.deepcopy(model)
        for block in block_modules(self.module):
            fully_shard(block, mesh=mesh)
        fully_shard(self.module, mesh=mesh)
        for unit in self.module.modules():  # the loss has the global denominators: sum, not average
            if isinstance(unit, FSDPModule):
                unit.set_gradient_divide_factor(1.0)
                unit.set_force_sum_reduction_for_comms(True)  # a plain SUM (gloo has no PREMUL_SUM)

    def parameters(self) -> list[torch.nn.Parameter]:
        """This rank's shards of the trained weights (what the optimizer steps)."""
        return list(self.module.parameters())

    def publish(self) -> None:
        """Copy the sharded weights, gathered whole, into the full model (on every rank)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        whole = get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True))
        with torch.no_grad():
            self.full.load_state_dict(whole, strict=False)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's whole state, gathered (every rank takes part; rank 0 gets it all)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(self.module, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load a whole optimizer state (what `optimizer_state` wrote) as this rank's shards."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        try:
            set_optimizer_state_dict(self.module, optimizer, optim_state_dict=state,
                                     options=StateDictOptions(full_state_dict=True))
        except (KeyError, RuntimeError, ValueError) as err:
            raise RftkitError(f"rftkit.fsdp: the checkpoint's optimizer state does not load into the sharded "
                              f"policy ({type(err).__name__}: {err})",
                              fix="resume with the rftkit.fsdp setting the checkpoint was written with") from None


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether `model` is an FSDP2 module (its update then keeps the ranks' passes in step)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)
