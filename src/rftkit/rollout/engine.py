"""② The engine seam: token ids in; sampled token ids, their log-probs and a finish reason out.

Every sampler in rftkit (training rollouts, the baseline check, validation, `rftkit eval`, the
demo's warm-start check and the serving worker) calls `Engine.generate`; nothing else decodes.
So what is measured is what is trained, and a new engine (vLLM, a remote server, an async
pipeline) plugs in here without an `if` anywhere else.

    engine = build_engine("auto", EngineContext(model, tokenizer))
    engine.update_weights(model, version=step)      # before sampling, after an optimizer step
    groups = engine.generate(prompts, params, n=8, generator=generator)   # [prompt][sample]

Engines are registered by name (`rftkit.engine`):

| name   | where it runs                            | sampling log-probs            |
|--------|------------------------------------------|-------------------------------|
| hf     | the policy's own forward, KV cache       | the trainer's, to float error |
| lean   | rftkit's lean Llama forward (CPU)        | the trainer's, to float error |
| vllm   | an in-process `vllm.LLM` (GPU)           | vLLM's kernels: corrected     |
| openai | any OpenAI-compatible server             | the server's: corrected       |

`auto` is `lean` where the lean forward applies (Llama-family, CPU, up to 50M parameters) and
`hf` otherwise. An engine whose `exact_logprobs` is False has the trainer recompute the old
log-probs and apply the truncated importance-sampling correction (`rftkit.rollout_correction`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rftkit.errors import RftkitError
from rftkit.types import SamplingParams, Shard

if TYPE_CHECKING:
    import torch

    from rftkit.config import EngineOptions, LoraOptions

__all__ = ["Completion", "Engine", "EngineContext", "EngineUnavailable", "ENGINES", "SamplingParams", "Shard",
           "build_engine", "register_engine"]

# (rows, tokens): the new token of each row still writing, rows numbered prompt-major
# (prompt i's sample j is row i * n + j). For streaming; engines that cannot stream never call it.
TokenCallback = Callable[[list[int], list[int]], None]


@dataclass(frozen=True)
class Completion:
    """One sampled completion: its token ids (ending with the end-of-turn token when
    `finish_reason` is "stop"), the sampler's log-probability of each under the
    temperature-scaled distribution, and the policy version whose weights sampled it."""

    token_ids: list[int]
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "length"
    policy_version: int = 0


class EngineUnavailable(RftkitError):
    """The engine cannot sample now (a server that stopped answering): the job stops with a
    checkpoint it can resume from."""


@dataclass
class EngineContext:
    """What an engine may need to start: the policy and its tokenizer, where the policy came
    from (a directory or hub name, for engines that load their own copy), the engine's options,
    a folder for weights it has to read from disk, and the LoRA settings."""

    model: Any
    tokenizer: Any
    model_path: str | None = None
    options: "EngineOptions | None" = None
    work_dir: Path | None = None
    lora: "LoraOptions | None" = None
    max_length: int | None = None  # the longest prompt plus what is sampled after it; None: unknown


class Engine:
    """The protocol every engine implements (subclass it and register the subclass).

    `version` is the policy version of the weights the engine samples with; `update_weights`
    brings the engine to the trainer's weights and sets it (engines skip work when the version
    is already current). `sleep` / `wake` free and restore accelerator memory for engines that
    share a GPU with the trainer; elsewhere they do nothing.
    """

    name: ClassVar[str] = ""
    exact_logprobs: ClassVar[bool] = False  # True: sampling log-probs equal the trainer's to float error
    # True: it samples from weights of its own (a server, vLLM, Ray actors) that only
    # `update_weights` changes, so it may sample while the trainer updates the policy
    holds_own_weights: ClassVar[bool] = False

    def __init__(self) -> None:
        self.version: int | None = None

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams, *, n: int = 1,
                 generator: "torch.Generator | None" = None,
                 on_tokens: TokenCallback | None = None, shard: Shard | None = None) -> list[list[Completion]]:
        """`n` completions of each prompt, [prompt][sample]. `generator` makes sampling
        reproducible (remote engines draw their request seeds from it). `shard` places the
        prompts in a batch split across data-parallel ranks: an engine that honours it draws
        for the whole batch and keeps its share, so a prompt's samples do not depend on the
        split; one that cannot (a remote server) samples its share as it would any batch."""
        raise NotImplementedError

    def update_weights(self, model: Any, version: int) -> None:
        raise NotImplementedError

    def sleep(self) -> None:
        """Free accelerator memory between rollouts (no-op unless the engine holds any)."""

    def wake(self) -> None:
        """Undo `sleep` before the next `generate` or `update_weights`."""

    def close(self) -> None:
        """Release processes, connections and files the engine holds."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


ENGINES: dict[str, type[Engine]] = {}


def register_engine(name: str):
    def add(cls: type[Engine]) -> type[Engine]:
        cls.name = name
        ENGINES[name] = cls
        return cls

    return add


def engine_names() -> list[str]:
    _load_engines()
    return ["auto", *sorted(ENGINES)]  # in one order, whichever engine module was imported first


def _load_engines() -> None:
    # importing registers them; vllm's module imports vllm itself only when an engine is made
    from rftkit.rollout import local, openai_engine, vllm_engine  # noqa: F401


def build_engine(name: str, context: EngineContext) -> Engine:
    """The engine called `name` ("auto" picks lean or hf for the policy, as described above)."""
    _load_engines()
    if name == "auto":
        from rftkit.rollout.local import auto_engine_name

        name = auto_engine_name(context.model)
    if name not in ENGINES:
        raise RftkitError(f"rftkit.engine: unknown engine {name!r}", fix=f"use one of {', '.join(engine_names())}")
    return ENGINES[name](context)


def local_engine(model: Any, tokenizer: Any, name: str = "auto") -> Engine:
    """An in-process engine (auto, hf or lean) over `model` itself."""
    return build_engine(name, EngineContext(model, tokenizer))


def job_engine(options, model: Any, tokenizer: Any, *, model_path: str | None, work_dir: Path | None) -> Engine:
    """The engine a job's `rftkit` block (`options`: RftkitOptions) asks for, over its policy."""
    return build_engine(options.engine, EngineContext(model, tokenizer, model_path, options.engine_options,
                                                      work_dir, options.lora, longest_sequence(options)))


def longest_sequence(options) -> int | None:
    """The longest prompt plus what may follow it: a completion, or a whole episode (None when
    the episode's budget is the model's context).

    >>> from rftkit.config import RftkitOptions
    >>> longest_sequence(RftkitOptions()), longest_sequence(RftkitOptions(environment={"factory": "e.py:E"}))
    (768, None)
    >>> longest_sequence(RftkitOptions(environment={"factory": "e.py:E", "max_tokens": 100}))
    612
    """
    lengths, episodes = options.lengths, options.environment
    after_prompt = episodes.max_tokens if episodes.factory is not None else lengths.max_completion_tokens
    return None if after_prompt is None else lengths.max_prompt_tokens + after_prompt
