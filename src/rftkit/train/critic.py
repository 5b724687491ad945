"""PPO's critic: a copy of the policy's transformer body with a scalar value head.

The value of the state before completion token t is read from the same hidden position
that predicts token t, so values line up with log-probs column for column. The head starts
at zero, so early advantages are just the returns. The body is a separate copy: sharing the
policy's body would let value-regression gradients pull on the policy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rftkit.models.load import trunk_and_head
from rftkit.train.logprobs import completion_states
from rftkit.types import Batch


class ValueModel(nn.Module):
    def __init__(self, body: nn.Module, hidden_size: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_policy(cls, policy: nn.Module) -> "ValueModel":
        body, head = trunk_and_head(policy)
        body = copy.deepcopy(body)
        for module in body.modules():  # a LoRA-wrapped policy: the critic trains its copy fully
            for name in ("lora_A", "lora_B"):
                if hasattr(module, name):
                    raise ValueError("build the critic before wrapping the policy with LoRA")
        body.requires_grad_(True)
        return cls(body, head.weight.shape[1])

    def forward(self, batch: Batch) -> torch.Tensor:
        """[N, C] values, 0 on padding."""
        states = completion_states(self.body, batch)
        # the head stays fp32 over a bf16 body (rftkit.precision): its own master weights
        return self.head(states.float()).squeeze(-1) * batch.completion_mask_NC
