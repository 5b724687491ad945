"""The in-process engines, `hf` and `lean`: they sample from the trainer's own policy module.

Both run `hf.generate` over the policy's current weights, so `update_weights` has nothing to
copy: it records the version. They differ in the forward that fills the KV cache:

- `hf`: the model's own forward (any architecture, CPU or GPU);
- `lean`: rftkit's lean Llama forward (`models/lean_llama.py`), the same mathematics in a third
  of the operators, with LoRA adapters merged for the call. On CPU it decodes these small
  models 2-3x faster; `auto` picks it for Llama-family models up to 50M parameters on CPU.

For one seed both sample the same tokens, with log-probs equal to float precision, and those
log-probs equal the trainer's recomputation: `exact_logprobs` is True.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rftkit.errors import RftkitError
from rftkit.models.lean_llama import LeanWeights
from rftkit.rollout.engine import Completion, Engine, EngineContext, TokenCallback, register_engine
from rftkit.rollout.fast_decode import decode_weights
from rftkit.rollout.hf import evaluating, generate, stop_token_ids
from rftkit.types import SamplingParams, Shard


def auto_engine_name(model: Any) -> str:
    """`lean` where its forward applies and pays off (see `fast_decode.decode_weights`), else `hf`."""
    return "lean" if decode_weights(model) is not None else "hf"


class LocalEngine(Engine):
    exact_logprobs = True

    def __init__(self, context: EngineContext):
        super().__init__()
        self.model, self.tokenizer = context.model, context.tokenizer
        self.stop_ids = stop_token_ids(self.model, self.tokenizer)

    def lean_weights(self) -> LeanWeights | None:
        return None

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams, *, n: int = 1,
                 generator: torch.Generator | None = None,
                 on_tokens: TokenCallback | None = None, shard: Shard | None = None) -> list[list[Completion]]:
        rows = [list(prompt) for prompt in prompts for _ in range(n)]
        if not rows:
            return []
        with evaluating(self.model):
            completions = generate(self.model, rows, params, pad_id=self.tokenizer.pad_token_id,
                                   stop_ids=self.stop_ids, generator=generator, lean=self.lean_weights(),
                                   on_tokens=on_tokens, version=self.version or 0,
                                   shard=shard.rows(n) if shard is not None else None)
        return [completions[i * n:(i + 1) * n] for i in range(len(prompts))]

    def update_weights(self, model: Any, version: int) -> None:
        """The engine samples from `model` itself: nothing to copy."""
        self.model, self.version = model, version


@register_engine("hf")
class HFEngine(LocalEngine):
    """The model's own forward with a transformers `DynamicCache`."""


@register_engine("lean")
class LeanEngine(LocalEngine):
    """rftkit's lean Llama forward over a preallocated cache (LoRA merged per call)."""

    def __init__(self, context: EngineContext):
        super().__init__(context)
        self.lean_weights()  # refuse an unsupported model now, not at the first step

    def lean_weights(self) -> LeanWeights:
        weights = LeanWeights.of(self.model)
        if weights is None:
            raise RftkitError(
                "rftkit.engine: lean decodes Llama-family models (llama, qwen2, mistral; default RoPE, "
                f"plain LoRA), not this {type(self.model).__name__}", fix="use engine: hf (or auto)")
        return weights
