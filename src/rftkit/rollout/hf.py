"""The transformers rollout engine: batched sampling with a KV cache, written out.

One call turns many prompts into completions: prompts are left-padded into one batch, the
prefill keeps only the last position's logits, and each decoding step feeds one token per
row through the cache. Position ids follow the attention mask (a left-padded row's first
real token is position 0), which is what the trainer uses when it recomputes log-probs, so
the two agree to float precision.

`model.generate` would do the same, with per-step overhead that dominates for tiny models
and with less control over what is recorded (the sampling log-probs, the finish reason).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Completion:
    token_ids: list[int]
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "length"


@contextmanager
def evaluating(model: torch.nn.Module):
    """Eval mode (no dropout) for the block, then back to the mode the model was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def left_pad(prompts: list[list[int]], pad_id: int, device: torch.device):
    """(input_ids [B, L], attention_mask [B, L], position_ids [B, L]) for left-padded prompts."""
    longest = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, longest - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, longest - len(prompt):] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids.to(device), attention_mask.to(device), position_ids.to(device)


def filter_logits(logits_BV: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus), as in most samplers."""
    logits_BV = logits_BV / params.temperature
    if params.top_k > 0 and params.top_k < logits_BV.shape[-1]:
        kth = torch.topk(logits_BV, params.top_k, dim=-1).values[..., -1:]
        logits_BV = logits_BV.masked_fill(logits_BV < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits_BV, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already reaches top_p (the first always stays)
        drop_sorted = (probs.cumsum(-1) - probs) >= params.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits_BV = logits_BV.masked_fill(drop, float("-inf"))
    return logits_BV


@torch.no_grad()
def distinct_prompts(prompts: list[list[int]]) -> tuple[list[list[int]], torch.Tensor]:
    """(the distinct prompts in first-seen order, [N] index of each row's prompt among them).

    >>> distinct_prompts([[1, 2], [1, 2], [3]])
    ([[1, 2], [3]], tensor([0, 0, 1]))
    """
    seen: dict[tuple[int, ...], int] = {}
    index = [seen.setdefault(tuple(p), len(seen)) for p in prompts]
    return [list(p) for p in seen], torch.tensor(index, dtype=torch.long)


def sample_next(logits_BV: torch.Tensor, params: SamplingParams, generator: torch.Generator | None):
    """(token [B], its log-probability under the temperature-scaled distribution [B])."""
    if params.greedy:
        token_B = logits_BV.argmax(-1)
        return token_B, logits_BV.log_softmax(-1).gather(-1, token_B[:, None])[:, 0]
    cdf_BV = filter_logits(logits_BV, params).softmax(-1).cumsum(-1)
    # inverse-CDF sampling: the first token whose cumulative probability exceeds a uniform
    # draw; exact, and several times cheaper than torch.multinomial for a batch of rows
    uniform_B1 = torch.rand((len(cdf_BV), 1), generator=generator, device=cdf_BV.device) * cdf_BV[:, -1:]
    token_B = torch.searchsorted(cdf_BV, uniform_B1, right=True)[:, 0].clamp(max=cdf_BV.shape[-1] - 1)
    return token_B, (logits_BV / params.temperature).log_softmax(-1).gather(-1, token_B[:, None])[:, 0]


def generate(
    model: torch.nn.Module,
    prompts: list[list[int]],
    params: SamplingParams,
    *,
    pad_id: int,
    stop_ids: set[int],
    generator: torch.Generator | None = None,
) -> list[Completion]:
    """Sample one completion per prompt (repeat a prompt G times for a group).

    Two savings over decoding every row to the end: a prompt repeated for a group is read
    once (the prefill runs on distinct prompts and their key/value cache is shared by every
    row that repeats them), and a row that has finished leaves the batch, so each decoding
    step computes only for rows still writing.
    """
    device = next(model.parameters()).device
    distinct, prompt_of_row = distinct_prompts(prompts)
    input_ids, attention_mask, position_ids = left_pad(distinct, pad_id, device)
    stop = torch.tensor(sorted(stop_ids), device=device)
    cache = DynamicCache()
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    prompt_of_row = prompt_of_row.to(device)
    cache.batch_select_indices(prompt_of_row)
    logits_BV = out.logits[prompt_of_row, -1, :].float()
    attention_mask, next_position = attention_mask[prompt_of_row], position_ids[prompt_of_row, -1:] + 1
    rows = torch.arange(len(prompts), device=device)  # original row of each row still decoding
    tokens_NT = torch.full((len(prompts), params.max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs_NT = torch.zeros((len(prompts), params.max_new_tokens), device=device)
    for step in range(params.max_new_tokens):
        token_B, logprob_B = sample_next(logits_BV, params, generator)
        tokens_NT[rows, step], logprobs_NT[rows, step] = token_B, logprob_B
        writing = ~torch.isin(token_B, stop)
        if step + 1 == params.max_new_tokens or not bool(writing.any()):
            break
        if not bool(writing.all()):
            keep = writing.nonzero()[:, 0]
            cache.batch_select_indices(keep)
            rows, token_B, attention_mask, next_position = rows[keep], token_B[keep], attention_mask[keep], next_position[keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(rows), 1))], dim=1)
        out = model(input_ids=token_B[:, None], attention_mask=attention_mask, position_ids=next_position,
                    past_key_values=cache, use_cache=True)
        logits_BV = out.logits[:, -1, :].float()
        next_position = next_position + 1
    return _collect(tokens_NT[:, : step + 1], logprobs_NT[:, : step + 1], stop_ids) if params.max_new_tokens else \
        [Completion([]) for _ in prompts]


def _collect(tokens_NT: torch.Tensor, logprobs_NT: torch.Tensor, stop_ids: set[int]) -> list[Completion]:
    completions = []
    for ids, lps in zip(tokens_NT.tolist(), logprobs_NT.tolist()):
        end = next((i for i, t in enumerate(ids) if t in stop_ids), None)
        if end is None:
            completions.append(Completion(ids, lps, "length"))
        else:
            completions.append(Completion(ids[: end + 1], lps[: end + 1], "stop"))
    return completions


def decode(tokenizer, completion: Completion) -> str:
    """The completion's text, without the stop token or other special tokens."""
    return tokenizer.decode(completion.token_ids, skip_special_tokens=True)


def stop_token_ids(model, tokenizer) -> set[int]:
    """Tokens that end an assistant turn: the tokenizer's eos plus the generation config's."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return {i for i in ids if i is not None}
