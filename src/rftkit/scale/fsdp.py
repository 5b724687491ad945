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

Mixed precision (`rftkit.fsdp.mixed_precision: bf16`): the replica is made in fp32 whatever the
model's dtype, so its shards are fp32 master weights and AdamW's state is fp32; FSDP gathers each
unit's weights as bf16 for the forward and backward passes and reduce-scatters the gradients in
fp32. `publish` rounds the master weights into the whole model's dtype. When that dtype is
narrower than fp32 (a bf16 model on a GPU), the whole model no longer holds what the optimizer
stepped, so checkpoints carry the gathered master weights too (`master_state`) and resume puts
them back (`load_master_state`): a resumed job continues from the exact fp32 weights.

The optimizer's state in a checkpoint is gathered whole (rank 0 writes it, keyed by parameter
name), so a checkpoint reads back on any number of ranks that shard too; a run without FSDP
keys it by position, so a job resumes with the `rftkit.fsdp` setting it started with.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from rftkit.errors import RftkitError
from rftkit.models.load import is_narrow
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

    def __init__(self, model: torch.nn.Module, parallel: Parallel, mixed_precision: str = "no"):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
        from torch.distributed.tensor import DTensor

        if hasattr(model, "disable_adapter"):
            raise RftkitError("rftkit.fsdp shards a full fine-tune; this job trains a LoRA adapter",
                              fix="turn rftkit.fsdp off under LoRA (the adapter's state is small already)")
        if mixed_precision not in ("no", "bf16"):
            raise RftkitError(f"rftkit.fsdp.mixed_precision: {mixed_precision!r} is not known", fix="use no or bf16")
        self.full, self.mixed_precision = model, mixed_precision
        mesh = init_device_mesh(parallel.device, (parallel.world_size,))
        self.module = copy.deepcopy(model)
        bf16 = mixed_precision == "bf16"  # fp32 master weights (so fp32 optimizer state), bf16 arithmetic
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else \
            MixedPrecisionPolicy()
        for block in block_modules(self.module):
            if bf16:
                block.float()  # one block at a time, then sharded: no whole fp32 copy at once
            fully_shard(block, mesh=mesh, mp_policy=policy)
        if bf16:
            for parameter in self.module.parameters():  # the root's own (the blocks' are fp32 DTensors)
                if not isinstance(parameter, DTensor):
                    parameter.data = parameter.data.float()
        fully_shard(self.module, mesh=mesh, mp_policy=policy)
        for unit in self.module.modules():  # the loss has the global denominators: sum, not average
            if isinstance(unit, FSDPModule):
                unit.set_gradient_divide_factor(1.0)
                unit.set_force_sum_reduction_for_comms(True)  # a plain SUM (gloo has no PREMUL_SUM)

    def parameters(self) -> list[torch.nn.Parameter]:
        """This rank's shards of the trained weights (what the optimizer steps)."""
        return list(self.module.parameters())

    def publish(self) -> None:
        """Copy the sharded weights, gathered whole, into the full model (on every rank), one
        tensor at a time (a whole gathered copy would be another 4 bytes a parameter at once)."""
        from torch.distributed.tensor import DTensor

        whole = dict(self.full.named_parameters())
        with torch.no_grad():
            for name, parameter in self.module.named_parameters():
                gathered = parameter.full_tensor() if isinstance(parameter, DTensor) else parameter
                whole[name].copy_(gathered)

    @property
    def master_is_wider(self) -> bool:
        """Whether the shards hold more precision than the whole model (fp32 masters of bf16 weights)."""
        whole = dict(self.full.named_parameters())
        return any(p.dtype.itemsize > whole[name].dtype.itemsize for name, p in self.module.named_parameters())

    def master_state(self) -> dict[str, torch.Tensor] | None:
        """The master weights gathered whole on the CPU (every rank takes part), for a checkpoint,
        when the whole model cannot stand for them (see the module doc); else None."""
        if not self.master_is_wider:
            return None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_master_state(self, state: dict[str, torch.Tensor] | None) -> None:
        """Put a checkpoint's master weights back into the shards (None: the checkpoint has none,
        and the replica, made from the resumed whole model, already holds its weights)."""
        if state is None:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(self.module, state, options=StateDictOptions(full_state_dict=True))

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


def sharded_precision(setting: str, model: torch.nn.Module, precision: str) -> str:
    """rftkit.fsdp.mixed_precision with `auto` decided: bf16 when the whole model holds weights
    narrower than fp32 and rftkit.precision is not bf16-pure (their updates would be lost to
    rounding), else no.

    >>> sharded_precision("auto", torch.nn.Linear(2, 2).bfloat16(), "auto"), sharded_precision("no", None, "bf16")
    ('bf16', 'no')
    >>> sharded_precision("auto", torch.nn.Linear(2, 2), "auto"), sharded_precision("auto", None, "bf16-pure")
    ('no', 'no')
    """
    if setting != "auto":
        return setting
    if precision == "bf16-pure":
        return "no"
    return "bf16" if any(is_narrow(p) for p in model.parameters()) else "no"


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether `model` is an FSDP2 module (its update then keeps the ranks' passes in step)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)
