"""Batched sampling from an in-process model with a KV cache, written out: the loop behind the
`hf` and `lean` engines (`rollout/local.py`), which differ only in the forward that fills the
cache (the model's own, or rftkit's lean Llama forward in `fast_decode`).

One call turns many prompts into completions: prompts are left-padded into one batch, the
prefill keeps only the last position's logits, and each decoding step feeds one token per
row through the cache. Position ids follow the attention mask (a left-padded row's first
real token is position 0), which is what the trainer uses when it recomputes log-probs, so
the two agree to float precision.

`model.generate` would do the same, with per-step overhead that dominates for tiny models
and with less control over what is recorded (the sampling log-probs, the finish reason).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch
from transformers import DynamicCache

from rftkit.models.lean_llama import LeanWeights
from rftkit.rollout.engine import Completion
from rftkit.rollout.fast_decode import DecodeState
from rftkit.types import SamplingParams, Shard

COMPACT_FRACTION = 4  # measured on the bench's S model: 2, 4 and every-step removal within noise, 8 slower


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


class RowUniforms:
    """One uniform draw per row and decoding step, tied to the row's place in the whole batch:
    each step draws `shard.total` values and a call's rows read theirs at `shard.offset + row`.
    So a row samples the same token whether the batch runs in one call or is split across
    ranks (`types.Shard`), and whichever rows have finished. The draws come from the
    generator's own device (a CPU generator cannot fill a CUDA tensor), so one seed gives the
    same draws on every device."""

    def __init__(self, generator: torch.Generator | None, shard: Shard):
        self.generator, self.shard = generator, shard

    def draw(self, rows_B: torch.Tensor, device: torch.device) -> torch.Tensor:
        """[B, 1] uniforms of the call's rows `rows_B` (numbered within the call) for one step."""
        drawn_on = self.generator.device if self.generator is not None else device
        uniform_T = torch.rand(self.shard.total, generator=self.generator, device=drawn_on)
        return uniform_T[rows_B.to(drawn_on) + self.shard.offset].to(device)[:, None]


def sample_next(logits_BV: torch.Tensor, params: SamplingParams, generator: torch.Generator | None,
                uniform_B1: torch.Tensor | None = None):
    """(token [B], its log-probability under the temperature-scaled distribution [B]).
    `uniform_B1`: the rows' draws (`RowUniforms`); by default drawn here from `generator`."""
    if params.greedy:
        token_B = logits_BV.argmax(-1)
        return token_B, logits_BV.log_softmax(-1).gather(-1, token_B[:, None])[:, 0]
    cdf_BV = filter_logits(logits_BV, params).softmax(-1).cumsum(-1)
    # inverse-CDF sampling: the first token whose cumulative probability exceeds a uniform
    # draw; exact, and several times cheaper than torch.multinomial for a batch of rows
    if uniform_B1 is None:
        uniform_B1 = RowUniforms(generator, Shard(0, len(cdf_BV))).draw(torch.arange(len(cdf_BV)), cdf_BV.device)
    uniform_B1 = uniform_B1 * cdf_BV[:, -1:]
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
    lean: LeanWeights | None = None,
    on_tokens: Callable[[list[int], list[int]], None] | None = None,
    version: int = 0,
    shard: Shard | None = None,
) -> list[Completion]:
    """Sample one completion per prompt (repeat a prompt G times for a group).

    Two savings over decoding every row to the end: a prompt repeated for a group is read
    once (the prefill runs on distinct prompts and their key/value cache is shared by every
    row that repeats them), and finished rows leave the batch, so decoding steps compute
    mostly for rows still writing (they leave once they are 1/COMPACT_FRACTION of the batch:
    removing rows copies the cache, too dear to do at every step). Given `lean` (the model's
    weights laid out by `LeanWeights.of`), decoding goes through `fast_decode` (same
    mathematics, a fraction of the operators); otherwise through the model's own forward.
    `on_tokens(rows, tokens)`, when given, hears each step's new token of every row still
    writing (rows numbered as in `prompts`), for streaming. Completions carry `version`.
    `shard` places these rows in a larger batch split across ranks (see `RowUniforms`).
    """
    if not params.max_new_tokens:
        return [Completion([]) for _ in prompts]
    device = next(model.parameters()).device
    distinct, prompt_of_row = distinct_prompts(prompts)
    input_ids, attention_mask, position_ids = left_pad(distinct, pad_id, device)
    decoder = _decoder(model, lean, len(distinct), input_ids.shape[1] + params.max_new_tokens)
    logits_DV = decoder.prefill(input_ids, attention_mask, position_ids)
    prompt_of_row = prompt_of_row.to(device)
    decoder.select(prompt_of_row)
    logits_BV, next_position_B = logits_DV[prompt_of_row].float(), position_ids[prompt_of_row, -1] + 1
    rows = torch.arange(len(prompts), device=device)  # original row of each row in the batch
    finished_B = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    stop = torch.tensor(sorted(stop_ids), device=device)
    tokens_NT = torch.full((len(prompts), params.max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs_NT = torch.zeros((len(prompts), params.max_new_tokens), device=device)
    uniforms = RowUniforms(generator, shard or Shard(0, len(prompts)))
    for step in range(params.max_new_tokens):
        drawn_B1 = None if params.greedy else uniforms.draw(rows, device)
        token_B, logprob_B = sample_next(logits_BV, params, generator, drawn_B1)
        writing_B = ~finished_B
        tokens_NT[rows[writing_B], step], logprobs_NT[rows[writing_B], step] = token_B[writing_B], logprob_B[writing_B]
        if on_tokens is not None:
            on_tokens(rows[writing_B].tolist(), token_B[writing_B].tolist())
        finished_B = finished_B | torch.isin(token_B, stop)
        finished = int(finished_B.sum())
        if step + 1 == params.max_new_tokens or finished == len(rows):
            break
        if finished >= max(1, len(rows) // COMPACT_FRACTION):
            keep = (~finished_B).nonzero()[:, 0]
            decoder.select(keep)
            rows, token_B, finished_B = rows[keep], token_B[keep], finished_B[keep]
            next_position_B = next_position_B[keep]
        logits_BV = decoder.step(token_B, next_position_B).float()
        next_position_B = next_position_B + 1
    return _collect(tokens_NT[:, : step + 1], logprobs_NT[:, : step + 1], stop_ids, version)


def _decoder(model: torch.nn.Module, lean: LeanWeights | None, rows: int, width: int):
    if lean is None:
        return _ModelDecoder(model)
    parameter = next(model.parameters())
    return DecodeState(lean, rows, width, parameter.dtype, parameter.device)


class _ModelDecoder:
    """The model's own forward with a growing cache: for architectures `fast_decode` lacks.
    The same interface as `fast_decode.DecodeState`."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.cache, self.attention_mask = model, DynamicCache(), None

    @torch.no_grad()
    def prefill(self, input_ids, attention_mask, position_ids) -> torch.Tensor:
        self.attention_mask = attention_mask
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :]

    def select(self, index: torch.Tensor) -> None:
        self.cache.batch_select_indices(index)
        self.attention_mask = self.attention_mask[index]

    @torch.no_grad()
    def step(self, token_B: torch.Tensor, position_B: torch.Tensor) -> torch.Tensor:
        self.attention_mask = torch.cat([self.attention_mask, self.attention_mask.new_ones((len(token_B), 1))], dim=1)
        out = self.model(input_ids=token_B[:, None], attention_mask=self.attention_mask,
                         position_ids=position_B[:, None], past_key_values=self.cache, use_cache=True)
        return out.logits[:, -1, :]


def _collect(tokens_NT: torch.Tensor, logprobs_NT: torch.Tensor, stop_ids: set[int], version: int) -> list[Completion]:
    completions = []
    for ids, lps in zip(tokens_NT.tolist(), logprobs_NT.tolist()):
        end = next((i for i, t in enumerate(ids) if t in stop_ids), None)
        if end is None:
            completions.append(Completion(ids, lps, "length", version))
        else:
            completions.append(Completion(ids[: end + 1], lps[: end + 1], "stop", version))
    return completions


def decode(tokenizer, token_ids) -> str:
    """The text of completion tokens, without the stop token or other special tokens."""
    return tokenizer.decode(list(token_ids), skip_special_tokens=True)


def stop_token_ids(model, tokenizer) -> set[int]:
    """Tokens that end an assistant turn: the tokenizer's eos plus the generation config's."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return {i for i in ids if i is not None}
