"""Supervised fine-tuning on the final assistant turn of each row, or on every assistant turn
of a tool transcript.

The loss is cross-entropy on the completion tokens only (the assistant's text and its
end-of-turn token); prompt and padding positions are masked out. A tool transcript (OpenAI's
format: assistant turns with `tool_calls`, `tool` messages with `tool_call_id`, `tools` on the
row) is laid out as an episode is (`data.conversation`): every assistant turn from the first
one is trained, tool-call turns included; tool results and template tokens are masked. Full fine-tuning or LoRA
depends only on which parameters require grad. This is the SFT half of SFT -> RFT: a few
labelled answers give a model enough competence for reinforcement to find reward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from rftkit.config import Optimizer
from rftkit.data.chat import encode_completion, encode_prompt
from rftkit.data.conversation import conversation_segments
from rftkit.train.optim import make_optimizer, schedule_factor, set_learning_rate, trained_parameters
from rftkit.train.order import DataOrder
from rftkit.types import Example

IGNORE = -100  # label of positions that carry no loss (transformers' convention)


@dataclass(frozen=True)
class SupervisedPair:
    """Prompt and completion ids; `loss_mask` marks the completion tokens trained on (None: all)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    loss_mask: list[int] | None = None


def is_tool_transcript(example: Example) -> bool:
    return any(m.get("role") == "tool" or m.get("tool_calls") for m in example.messages)


def encode_transcript(tokenizer, example: Example, max_completion_tokens: int) -> SupervisedPair:
    prompt, segments = conversation_segments(tokenizer, example.messages, example.tools)
    ids = [i for s in segments for i in s.ids]
    mask = [int(s.trained) for s in segments for _ in s.ids]
    return SupervisedPair(prompt, ids[:max_completion_tokens], mask[:max_completion_tokens])


@dataclass(frozen=True)
class SFTSettings:
    total_steps: int
    batch_size: int
    learning_rate: float
    optimizer: Optimizer = Optimizer()
    seed: int = 0
    max_completion_tokens: int = 256
    eval_every: int = 0  # steps between validation-loss passes; 0: only at the end
    master_weights: bool = True  # narrow (bf16) weights stepped through fp32 copies; off for rftkit.precision bf16-pure


def encode_supervised(tokenizer, examples: list[Example], max_completion_tokens: int) -> list[SupervisedPair]:
    """Prompt and target token ids for every example (targets cut at max_completion_tokens)."""
    return [
        encode_transcript(tokenizer, e, max_completion_tokens) if is_tool_transcript(e) else SupervisedPair(
            encode_prompt(tokenizer, e),
            encode_completion(tokenizer, e.target or "")[:max_completion_tokens],
        )
        for e in examples
    ]


def collate(pairs: list[SupervisedPair], pad_id: int):
    """Right-padded (input_ids, attention_mask, labels), each [B, T]; labels mask the prompt."""
    longest = max(len(p.prompt_ids) + len(p.completion_ids) for p in pairs)
    input_ids = torch.full((len(pairs), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), longest), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(pairs), longest), dtype=torch.long)
    for row, pair in enumerate(pairs):
        ids = pair.prompt_ids + pair.completion_ids
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        targets = torch.tensor(pair.completion_ids, dtype=torch.long)
        if pair.loss_mask is not None:
            targets = targets.masked_fill(torch.tensor(pair.loss_mask) == 0, IGNORE)
        labels[row, len(pair.prompt_ids): len(ids)] = targets
    return input_ids, attention_mask, labels


def completion_loss(model, pairs: list[SupervisedPair], pad_id: int) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the completion tokens of a batch, and how many there were."""
    device = next(model.parameters()).device
    input_ids, attention_mask, labels = (t.to(device) for t in collate(pairs, pad_id))
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # [B, T, V]
    targets = labels[:, 1:]  # position t predicts token t+1
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum"
    )
    tokens = int((targets != IGNORE).sum())
    return loss / max(tokens, 1), tokens


@torch.no_grad()
def evaluation_loss(model, pairs: list[SupervisedPair], pad_id: int, batch_size: int = 64) -> float:
    """Token-weighted mean completion loss over `pairs`."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for start in range(0, len(pairs), batch_size):
        loss, n = completion_loss(model, pairs[start:start + batch_size], pad_id)
        total, tokens = total + float(loss) * n, tokens + n
    model.train(was_training)
    return total / max(tokens, 1)


def run_sft(
    model,
    tokenizer,
    train: list[Example],
    valid: list[Example],
    settings: SFTSettings,
    on_step: Callable[[dict], None] | None = None,
    should_stop: Callable[[int], bool] | None = None,
) -> list[dict]:
    """Train for `settings.total_steps` steps, or until `should_stop(step)` says so; return one
    metrics row per step taken."""
    pad_id = tokenizer.pad_token_id
    train_pairs = encode_supervised(tokenizer, train, settings.max_completion_tokens)
    valid_pairs = encode_supervised(tokenizer, valid, settings.max_completion_tokens)
    optimizer = make_optimizer(model.parameters(), settings.learning_rate, settings.optimizer, settings.master_weights)
    order = DataOrder(len(train_pairs), settings.seed)
    steps_per_epoch = math.ceil(len(train_pairs) / settings.batch_size)
    history = []
    model.train()
    for step in range(1, settings.total_steps + 1):
        rate = settings.learning_rate * schedule_factor(step - 1, settings.optimizer, settings.total_steps)
        set_learning_rate(optimizer, rate)
        batch = [train_pairs[i] for i in order.next_batch(settings.batch_size)]
        loss, tokens = completion_loss(model, batch, pad_id)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(trained_parameters(optimizer), settings.optimizer.max_grad_norm)
        optimizer.step()
        row = {
            "step": step,
            "epoch": round(step / steps_per_epoch, 3),
            "train_loss": loss.item(),
            "grad_norm": float(grad_norm),
            "learning_rate": rate,
            "train_tokens": tokens,
        }
        last = step == settings.total_steps
        if valid_pairs and (last or (settings.eval_every and step % settings.eval_every == 0)):
            row["valid_loss"] = evaluation_loss(model, valid_pairs, pad_id)
        history.append(row)
        if on_step is not None:
            on_step(row)
        if should_stop is not None and should_stop(step):
            break
    model.eval()
    return history
