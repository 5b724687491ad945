"""Rollouts on Ray actors: `RayEngine` splits each `generate` across N rollout actors, each an
in-process engine (`hf` or `lean`) over its own copy of the policy.

    engine = RayEngine(placement, bundles=[0, 1], model=policy, tokenizer=tokenizer, engine_name="auto", calls=calls)
    engine.update_weights(policy, version=step)   # sends the trainable weights once per version
    groups = engine.generate(prompts, params, n=8, generator=generator)   # the in-process engine's tokens

The same tokens as one process: actor k samples a contiguous share of the prompts with
`Shard(offset + start_k, total)` and the caller's generator state, so each row reads the
random draws of its place in the whole batch (`rollout.hf.RowUniforms`), as data-parallel ranks
do. Afterwards the caller's generator is left where one process would have left it: at the state
of the actor that decoded the most steps (each step draws `total` values, whichever rows run).

Weights travel once per version through Ray's object store: the parameters that can change
(those with `requires_grad`: the adapter alone under LoRA), on CPU. A restarted actor starts
from the policy it was first given and loads the last weights sent before it takes a call.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from rftkit.errors import RftkitError
from rftkit.rollout.engine import Completion, Engine, TokenCallback, local_engine
from rftkit.scale.ray_cluster import Actors, CallPolicy, Placement, shares
from rftkit.types import SamplingParams, Shard

IN_PROCESS_ENGINES = ("auto", "hf", "lean")


def check_engine(name: str) -> None:
    """Refuse an engine a rollout actor cannot run (one that samples elsewhere, or needs a GPU)."""
    if name not in IN_PROCESS_ENGINES:
        raise RftkitError(f"rftkit.engine: under --ray each rollout actor runs an in-process engine, not {name}",
                          fix="use engine: auto, hf or lean with --ray")


class RolloutWorker:
    """Inside one rollout actor: an in-process engine over the actor's copy of the policy."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, engine_name: str, threads: int):
        torch.set_flush_denormal(True)
        torch.set_num_threads(threads)
        self.model = model.eval().requires_grad_(False)
        self.engine = local_engine(self.model, tokenizer, engine_name)

    @torch.no_grad()
    def load(self, weights: dict[str, torch.Tensor], version: int) -> int:
        """Copy `weights` (a subset of the policy's parameters, by name) in; the new version."""
        parameters = dict(self.model.named_parameters())
        unknown = sorted(set(weights) - set(parameters))
        if unknown:
            raise RftkitError(f"rollout actor: the trainer sent weights this policy lacks: {unknown[:3]}")
        for name, value in weights.items():
            parameters[name].copy_(value)
        self.engine.update_weights(self.model, version)
        return version

    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int, generator_state, shard: Shard):
        """(completions [prompt][sample], the generator's state afterwards, or None without one)."""
        generator = None
        if generator_state is not None:
            generator = torch.Generator()
            generator.set_state(generator_state)
        groups = self.engine.generate(prompts, params, n=n, generator=generator, shard=shard)
        return groups, generator.get_state() if generator is not None else None

    def pid(self) -> int:
        return os.getpid()


def trainable_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters an optimizer step can change, on CPU: what a rollout actor needs per version."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def steps_decoded(groups: list[list[Completion]]) -> int:
    """How many decoding steps produced `groups`: its longest completion (each step draws once)."""
    return max((len(c.token_ids) for group in groups for c in group), default=0)


class RayEngine(Engine):
    """`generate` on N rollout actors; the tokens of the in-process engine for the same seed."""

    name = "ray"
    holds_own_weights = True

    def __init__(self, placement: Placement, bundles: list[int], *, model: torch.nn.Module, tokenizer: Any,
                 engine_name: str, calls: CallPolicy):
        super().__init__()
        check_engine(engine_name)
        parameter = next(model.parameters())
        # the actors decode on CPU: their log-probs are the trainer's only when it trains on CPU too
        self.exact_logprobs = parameter.device.type == "cpu"
        ray = placement.ray
        self.ray, self.weights_ref = ray, None
        initial = model if parameter.device.type == "cpu" else _cpu_copy(model)
        self.model_ref = ray.put(initial)
        self.actors = Actors(RolloutWorker, (self.model_ref, tokenizer, engine_name, placement.threads), placement,
                             bundles, calls, role="rollout", on_start=self._catch_up)

    def _catch_up(self, actor):
        """What a restarted actor runs first: the last weights sent (or nothing to wait for)."""
        if self.weights_ref is None:
            return actor.pid.remote()
        return actor.load.remote(self.weights_ref, self.version)

    def update_weights(self, model: Any, version: int) -> None:
        """Send the trainer's weights to every actor, once per version."""
        if version == self.version:
            return
        self.weights_ref = self.ray.put(trainable_weights(model))
        self.version = version
        self.actors.call("load", {k: (self.weights_ref, version) for k in range(len(self.actors))})

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams, *, n: int = 1,
                 generator: torch.Generator | None = None,
                 on_tokens: TokenCallback | None = None, shard: Shard | None = None) -> list[list[Completion]]:
        """`on_tokens` is not called: each actor's share comes back whole."""
        whole = shard or Shard(0, len(prompts))
        state = generator.get_state() if generator is not None else None
        args = {k: ([list(p) for p in prompts[s.start:s.stop]], params, n, state,
                    Shard(whole.offset + s.start, whole.total))
                for k, s in enumerate(shares(len(prompts), len(self.actors))) if len(s)}
        results = self.actors.call("generate", args)
        if generator is not None and results:
            longest = max(results.values(), key=lambda result: steps_decoded(result[0]))
            generator.set_state(longest[1])
        return [group for k in sorted(results) for group in results[k][0]]

    def close(self) -> None:
        self.actors.close()


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to("cpu")
