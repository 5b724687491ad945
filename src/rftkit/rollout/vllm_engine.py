"""The `vllm` engine: an in-process `vllm.LLM` on the trainer's GPU (`pip install 'rftkit[vllm]'`).

vLLM loads the job's model itself and is then kept at the trainer's weights:

- full fine-tuning: after each optimizer step the policy's tensors are handed to vLLM's own
  `load_weights` in this process (no copy through the disk; vLLM's V1 engine core runs in the
  trainer's process, `VLLM_ENABLE_V1_MULTIPROCESSING=0`);
- LoRA: the adapter is saved (a few MB) and sampled through a new `LoRARequest` per version.

With `engine_options.sleep` (the default) vLLM sleeps while the trainer updates (the trainer
calls `sleep()` before its update; level 1: vLLM's weights go to CPU memory and its KV cache is
freed), so that the update gets the GPU memory back; the next sampling or weight sync wakes it.
Sampling log-probs are vLLM's, after temperature (`logprobs_mode="processed_logprobs"`), so the
trainer recomputes the old log-probs and corrects by truncated importance sampling.

vLLM needs a CUDA GPU and brings its own CUDA build of torch: CI never installs it, and this
module imports vllm only when an engine is made.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rftkit.config import EngineOptions
from rftkit.errors import RftkitError
from rftkit.rollout.engine import Completion, Engine, EngineContext, TokenCallback, register_engine
from rftkit.rollout.hf import stop_token_ids
from rftkit.types import SamplingParams, Shard


def _import_vllm():
    if not torch.cuda.is_available():
        raise RftkitError("rftkit.engine: vllm runs on a CUDA GPU, and none is visible",
                          fix="use engine: auto (or hf) here")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # weights load by reference, in this process
    try:
        import vllm
    except ImportError:
        raise RftkitError("rftkit.engine: vllm is not installed",
                          fix="pip install 'rftkit[vllm]' (vLLM brings its own CUDA build of torch)") from None
    return vllm


def _load_weights(worker, weights: list[tuple[str, torch.Tensor]]) -> None:
    """Run on vLLM's worker: its model takes Hugging Face parameter names."""
    worker.model_runner.model.load_weights(weights=weights)


# vLLM's accepted LoRA ranks (`max_lora_rank`)
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def llm_settings(context: EngineContext) -> dict[str, Any]:
    """`vllm.LLM`'s arguments for this policy.

    A LoRA export (a folder with adapter_config.json, as `rftkit eval` may get) starts vLLM
    from its base model; the merged weights are pushed after. `max_model_len` is the context's
    (the job's prompt and completion limits) unless set; `max_lora_rank` is the smallest rank
    vLLM accepts that holds the adapter.

    >>> from rftkit.config import EngineOptions, LoraOptions
    >>> import torch
    >>> context = EngineContext(torch.nn.Linear(2, 2), None, "m", EngineOptions(), lora=LoraOptions(enabled=True, r=12),
    ...                         max_length=300)
    >>> {k: llm_settings(context)[k] for k in ("model", "dtype", "max_model_len", "max_lora_rank")}
    {'model': 'm', 'dtype': 'float32', 'max_model_len': 300, 'max_lora_rank': 16}
    """
    if not context.model_path:
        raise RftkitError("engine vllm: the job's model directory is needed to start vLLM")
    options = context.options or EngineOptions()
    source = _base_of_adapter(context.model_path)
    dtype = str(next(context.model.parameters()).dtype).removeprefix("torch.")
    settings: dict[str, Any] = dict(
        model=source, tokenizer=source, dtype=dtype, seed=0,
        gpu_memory_utilization=options.gpu_memory_utilization,
        max_model_len=options.max_model_len or context.max_length,
        enable_sleep_mode=options.sleep, enable_prefix_caching=True,
        logprobs_mode="processed_logprobs",
    )
    lora = context.lora
    if lora is not None and lora.enabled:
        rank = next((r for r in LORA_RANKS if r >= lora.r), None)
        if rank is None:
            raise RftkitError(f"engine vllm: LoRA rank {lora.r} is above vLLM's largest ({LORA_RANKS[-1]})",
                              fix=f"rftkit.lora.r: at most {LORA_RANKS[-1]}")
        settings.update(enable_lora=True, max_lora_rank=rank, max_loras=1)
    return settings


def _base_of_adapter(path: str) -> str:
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return path
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise RftkitError(f"engine vllm: {path} is a LoRA adapter that does not name its base model",
                          fix="point at a merged model directory, or name it as base_model_name_or_path in "
                              "adapter_config.json")
    return base


def refuse_ranks(world_size: int | None = None) -> None:
    """One in-process vLLM per rank would place every rank's engine on GPU 0 and build its own
    process groups over the trainer's: refused (for `world_size` ranks, or this process's group's)
    until rftkit drives vLLM's external launcher."""
    import torch.distributed as dist

    if world_size is None:
        world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world_size > 1:
        raise RftkitError(f"rftkit.engine: vllm samples in one process, and this job has {world_size} "
                          "data-parallel ranks",
                          fix="run it as one process (no --nproc / torchrun), or serve the model with `vllm serve` "
                              "and use engine: openai, which every rank can call")


@register_engine("vllm")
class VLLMEngine(Engine):
    exact_logprobs = False
    holds_own_weights = True

    def __init__(self, context: EngineContext):
        super().__init__()
        refuse_ranks()
        vllm = _import_vllm()
        self.vllm, self.options = vllm, context.options or EngineOptions()
        self.lora = context.lora if context.lora is not None and context.lora.enabled else None
        self.lora_dir = Path(context.work_dir or ".").resolve() / "engine-weights"
        self.stop_ids = sorted(stop_token_ids(context.model, context.tokenizer))
        self.llm = vllm.LLM(**llm_settings(context))
        self.lora_request = None
        self.asleep = False

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams, *, n: int = 1,
                 generator: torch.Generator | None = None,
                 on_tokens: TokenCallback | None = None, shard: Shard | None = None) -> list[list[Completion]]:
        """`on_tokens` is not called: vLLM answers whole. Each prompt's seed is drawn for the
        whole batch (`shard`), so a prompt gets the same seed however the batch is split."""
        if not prompts:
            return []
        self.wake()
        shard = shard or Shard(0, len(prompts))
        seeds = torch.randint(0, 2**31 - 1, (shard.total,), generator=generator)[shard.offset:][:len(prompts)].tolist()
        sampling = [self.vllm.SamplingParams(
            n=n, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or -1,
            max_tokens=params.max_new_tokens, logprobs=0, seed=seed, stop_token_ids=self.stop_ids,
        ) for seed in seeds]
        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        outputs = self.llm.generate(requests, sampling, lora_request=self.lora_request, use_tqdm=False)
        return [[self._completion(o) for o in output.outputs] for output in outputs]

    def _completion(self, output) -> Completion:
        ids = list(output.token_ids)
        logprobs = [float(step[token].logprob) for step, token in zip(output.logprobs or [], ids)]
        finish = "stop" if output.finish_reason == "stop" else "length"
        return Completion(ids, logprobs, finish, self.version or 0)

    def update_weights(self, model: Any, version: int) -> None:
        if version == self.version:
            return
        self.wake()
        if self.lora is not None:
            folder = self.lora_dir / f"v{version}"
            shutil.rmtree(folder, ignore_errors=True)
            model.save_pretrained(folder)
            from vllm.lora.request import LoRARequest

            old, self.lora_request = self.lora_request, LoRARequest(f"policy-v{version}", version + 1, str(folder))
            if old is not None:
                shutil.rmtree(old.lora_path, ignore_errors=True)
        else:
            weights = [(name, tensor.detach()) for name, tensor in model.state_dict().items()]
            self.llm.collective_rpc(_load_weights, args=(weights,))
            self.llm.reset_prefix_cache()  # cached keys were computed by the old weights
        self.version = version

    def sleep(self) -> None:
        if self.options.sleep and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            torch.cuda.empty_cache()  # the update's freed blocks, which torch's allocator still holds
            self.llm.wake_up()
            self.asleep = False

    def close(self) -> None:
        self.llm = None
        torch.cuda.empty_cache()
