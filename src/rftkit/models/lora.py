"""PEFT's LoRA linear layer with its adapter added inside one matrix multiply.

PEFT computes `base(x) + B(A(dropout(x))) * scaling`: after the two small adapter matmuls
come a multiply and an add over the whole output, `[rows x tokens, out]`, and the
multiply's backward is one more pass of that size. For a small model those passes cost as
much as the matmuls (a rank-16 adapter on a 128-wide layer: 4.3 ms forward+backward for
2,944 tokens, 2.8 ms without them). Here the adapter's product is accumulated into the
base output by `addmm`, with the scaling as its `alpha`: the same sum, computed as PEFT
computes it for fp32, without the two extra passes.

Only the plain case takes this path: one active, unmerged adapter of vanilla LoRA (no DoRA
or other variant, no bias on B), input, base and adapter of one dtype, and no extra forward
arguments (no `adapter_names` mixed batch). Everything else is PEFT's own forward. The
layer is PEFT's in every other respect (state dict, merging, saving), so adapters it saves
load anywhere.

Two limits. The gain is on CPU in fp32: on a GPU rftkit loads the base in bf16 and PEFT
keeps adapters in fp32, so the dtypes differ and PEFT's forward runs. And the adapter's
weights are read directly, so forward hooks on `lora_A`/`lora_B` (ZeRO-3 or FSDP gathering)
do not fire; rftkit uses neither.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft.tuners.lora import Linear as LoraLinear


class AddmmLoraLinear(LoraLinear):
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        adapter = self._plain_adapter(x, args, kwargs)
        if adapter is None:
            return super().forward(x, *args, **kwargs)
        base = self.base_layer(x)  # [..., out]
        low = F.linear(self.lora_dropout[adapter](x), self.lora_A[adapter].weight)  # [..., r]
        out_NO = torch.addmm(base.reshape(-1, base.shape[-1]), low.reshape(-1, low.shape[-1]),
                             self.lora_B[adapter].weight.t(), alpha=self.scaling[adapter])
        return out_NO.view(base.shape)

    def _plain_adapter(self, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
        """The one adapter this forward applies, or None when PEFT's forward must run."""
        if args or kwargs or self.disable_adapters or self.merged:
            return None
        active = [a for a in self.active_adapters if a in self.lora_A]
        if len(active) != 1 or not plain_lora(self):
            return None
        A, B = self.lora_A[active[0]], self.lora_B[active[0]]
        base_weight = getattr(self.get_base_layer(), "weight", None)
        if base_weight is None:
            return None
        if not x.dtype == A.weight.dtype == B.weight.dtype == base_weight.dtype:
            return None
        return active[0]


def plain_lora(module: torch.nn.Module) -> bool:
    """LoRA whose effect is exactly `get_delta_weight`: no variant (DoRA's magnitudes), no
    bias on B. The lean decoder merges only such adapters; this layer adds only such."""
    variants = [*getattr(module, "lora_variant", {}).values(), *getattr(module, "use_dora", {}).values()]
    biased = any(getattr(layer, "bias", None) is not None for layer in getattr(module, "lora_B", {}).values())
    return not any(variants) and not biased


def use_addmm_layers(model: torch.nn.Module) -> torch.nn.Module:
    """Give every PEFT LoRA linear layer of `model` the addmm forward (in place; returns it).
    `rftkit.models.load` calls it for every LoRA policy it makes or resumes."""
    for module in model.modules():
        if type(module) is LoraLinear:
            module.__class__ = AddmmLoraLinear
    return model
