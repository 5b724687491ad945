"""Training a reward model on feedback: losses per head, held-out early stopping.

    summary = train_reward_model(records, base="runs/sft/model", out=Path("runs/rm"), options=RMOptions())

Each step takes `batch_size` judgements, scores every answer they mention in one forward
pass, and adds per head the Bradley-Terry loss over its pairs and (for ratings and the
unsafe flag) the pointwise loss over its labels. After every epoch the same loss on the
calibration split decides early stopping; the best epoch's weights are kept. Then each
head is calibrated on the calibration split and everything is measured on the test split
(validation.py).
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path
from typing import Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from rftkit.feedback.dataset import Comparison, FeedbackData, build_data, heads_for, split_records
from rftkit.feedback.losses import RATING_LOSSES, bradley_terry_loss, flag_loss
from rftkit.models.reward import HeadInfo, RewardModel, new_reward_model, save_reward_model
from rftkit.feedback.records import RATING_HIGH, FeedbackRecord


class RMOptions(BaseModel):
    """Every knob of reward-model training, with its default."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    criteria: list[str] | None = Field(None, description="Rated criteria to learn; null: every one in the feedback.")
    epochs: int = Field(20, ge=1, description="Most passes over the training judgements.")
    patience: int = Field(3, ge=1, description="Stop after this many epochs without a better held-out loss.")
    batch_size: int = Field(16, ge=1, description="Judgements per optimizer step.")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate (body and heads).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    freeze_body: bool = Field(False, description="Train only the heads (fast for large bases).")
    holdout: float = Field(0.3, ge=0, lt=1, description="Share of items held out: half calibration, half test.")
    rating_loss: Literal["regression", "ordinal"] = Field("regression", description="Pointwise loss for 1-5 ratings.")
    pair_weight: float = Field(1.0, ge=0, description="Weight of the Bradley-Terry (pairwise) loss.")
    point_weight: float = Field(1.0, ge=0, description="Weight of the pointwise (rating, flag) loss.")
    calibration: Literal["platt", "temperature", "isotonic", "none"] = Field("platt", description="Calibration map.")
    max_length: int = Field(512, ge=8, description="Longest prompt + answer in tokens (cut from the left).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available.")
    seed: int = Field(0, description="Seeds the split, the order and the heads.")


def comparison_loss(scores_NH: torch.Tensor, position: dict[int, int], comparisons: list[Comparison],
                    heads: list[HeadInfo], options: RMOptions) -> torch.Tensor:
    """The batch's loss: per head, BT over its pairs + pointwise over its labels, summed over heads."""
    total = scores_NH.new_zeros(())
    for k, head in enumerate(heads):
        pairs = [(position[b], position[w]) for c in comparisons for h, b, w in c.pairs if h == k]
        if pairs and options.pair_weight > 0:
            better, worse = torch.tensor(pairs).T
            total = total + options.pair_weight * bradley_terry_loss(scores_NH[better, k], scores_NH[worse, k])
        labels = [(position[a], v) for c in comparisons for h, a, v in c.labels if h == k]
        if labels and head.kind != "preference" and options.point_weight > 0:
            rows = torch.tensor([a for a, _ in labels])
            values = torch.tensor([v for _, v in labels], device=scores_NH.device)
            if head.kind == "rating":
                point = RATING_LOSSES[options.rating_loss](scores_NH[rows, k], values.long(), RATING_HIGH)
            else:
                point = flag_loss(scores_NH[rows, k], values)
            total = total + options.point_weight * point
    return total


def batch_loss(model: RewardModel, data: FeedbackData, comparisons: list[Comparison], options: RMOptions) -> torch.Tensor:
    answers = sorted({a for c in comparisons for a in c.answers})
    position = {a: i for i, a in enumerate(answers)}
    scores_NH = model([data.ids[a] for a in answers])
    return comparison_loss(scores_NH, position, comparisons, model.heads, options)


@torch.no_grad()
def held_out_loss(model: RewardModel, data: FeedbackData, options: RMOptions) -> float:
    model.eval()
    total, batches = 0.0, 0
    for start in range(0, len(data), options.batch_size):
        total += float(batch_loss(model, data, data.comparisons[start:start + options.batch_size], options))
        batches += 1
    return total / max(batches, 1)


def _epoch(model, data: FeedbackData, optimizer, options: RMOptions, rng: random.Random, on_step) -> float:
    model.train()
    order = list(range(len(data)))
    rng.shuffle(order)
    total = 0.0
    for start in range(0, len(order), options.batch_size):
        chosen = [data.comparisons[i] for i in order[start:start + options.batch_size]]
        loss = batch_loss(model, data, chosen, options)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total += float(loss.detach()) * len(chosen)
        on_step()
    return total / max(len(data), 1)


def fit(model: RewardModel, train: FeedbackData, valid: FeedbackData, options: RMOptions,
        log: Callable[[str], None]) -> list[dict]:
    """Train with early stopping on `valid`'s loss; leaves the best epoch's weights in `model`."""
    from rftkit.monitor.console import progress_bar

    if options.freeze_body:
        model.body.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.learning_rate, weight_decay=options.weight_decay)
    rng, history = random.Random(options.seed), []
    best, best_state, waited = float("inf"), None, 0
    steps_per_epoch = -(-len(train) // options.batch_size)
    with progress_bar() as progress:
        task = progress.add_task("rm", total=options.epochs * steps_per_epoch, info="")
        for epoch in range(1, options.epochs + 1):
            train_loss = _epoch(model, train, optimizer, options, rng, lambda: progress.advance(task))
            valid_loss = held_out_loss(model, valid, options) if len(valid) else train_loss
            history.append({"epoch": epoch, "train_loss": round(train_loss, 5), "valid_loss": round(valid_loss, 5)})
            progress.update(task, info=f"epoch {epoch}  train_loss {train_loss:.4f}  valid_loss {valid_loss:.4f}")
            if valid_loss < best - 1e-4:
                best, best_state, waited = valid_loss, copy.deepcopy(model.state_dict()), 0
            else:
                waited += 1
                if waited >= options.patience:
                    log(f"early stop after epoch {epoch}: no better held-out loss for {options.patience} epochs")
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def train_reward_model(records: list[FeedbackRecord], base: str, out: Path, options: RMOptions,
                       log: Callable[[str], None]) -> dict:
    """Split, train, calibrate, validate and save; returns the metrics written to out/metrics.json."""
    from rftkit.feedback.validation import calibrate, validate, write_report

    torch.manual_seed(options.seed)
    started = time.perf_counter()
    heads = heads_for(records, options.criteria)
    split = split_records(records, options.holdout, options.seed)
    model = new_reward_model(base, heads, device=options.device, max_length=options.max_length)
    data = {name: build_data(rows, heads, model.encode) for name, rows in split.items()}
    log(f"feedback: {len(records)} judgements -> {len(data['train'])} train, {len(data['calibration'])} "
        f"calibration, {len(data['test'])} test; heads {', '.join(h.name for h in heads)}")
    history = fit(model, data["train"], data["calibration"], options, log)
    calibrate(model, data["calibration"] if len(data["calibration"]) else data["train"], options.calibration)
    test = data["test"] if len(data["test"]) else data["calibration"]
    metrics = validate(model, test, split_name="test" if len(data["test"]) else "calibration")
    metrics.update({"history": history, "seconds": round(time.perf_counter() - started, 2), "base": base,
                    "options": options.model_dump(), "split_sizes": {k: len(v) for k, v in data.items()}})
    save_reward_model(model, out, {"base": base, "metrics": {h: m for h, m in metrics["heads"].items()}})
    write_report(out, metrics)
    return metrics
