"""From judgements to what the reward model's losses read.

Each judgement becomes a `Comparison`: ordered pairs per head (better, worse) for the
Bradley-Terry loss, and labels per head for the pointwise losses and for calibration:

- `preference`: the picked answer beats each other answer; labels 1 (picked) / 0 (not),
  used for calibration only (whether an answer is picked depends on what it is up against);
- a rated criterion: answers rated higher beat answers rated lower; the ratings (1-5) are
  labels for the rating loss;
- `safe`: an answer not flagged unsafe beats one flagged; labels 1 (safe) / 0 (flagged).

Items, not judgements, are split into train / calibration / test, so that no answer is seen
in training and then used to fit or judge calibration.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rftkit.errors import RftkitError
from rftkit.models.reward import HeadInfo
from rftkit.feedback.records import RATING_HIGH, RATING_LOW, FeedbackRecord

PREFERENCE, SAFE = "preference", "safe"


@dataclass(frozen=True)
class Comparison:
    answers: list[int]  # indices into FeedbackData.ids, in the item's order
    pairs: list[tuple[int, int, int]]  # (head, better answer, worse answer)
    labels: list[tuple[int, int, float]]  # (head, answer, label): a rating 1-5, or 0/1


@dataclass
class FeedbackData:
    ids: list[list[int]] = field(default_factory=list)  # one encoded (prompt, answer) per row
    comparisons: list[Comparison] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.comparisons)


def heads_for(records: list[FeedbackRecord], criteria: list[str] | None = None) -> list[HeadInfo]:
    """`preference` when any judgement picks an answer, each rated criterion (or those asked
    for), and `safe` when some answers are flagged unsafe and some are not."""
    seen = sorted({c for r in records for ratings in r.judgement.ratings for c in ratings})
    if criteria is not None:
        missing = [c for c in criteria if c not in seen]
        if missing:
            raise RftkitError(f"criteria: no ratings for {', '.join(missing)} in the feedback",
                              fix=f"choose among {', '.join(seen) or '(none rated)'}")
        seen = list(criteria)
    heads = [HeadInfo(PREFERENCE, "preference")] if any(r.judgement.preferred is not None for r in records) else []
    heads += [HeadInfo(c, "rating") for c in seen]
    flags = {flag for r in records for flag in r.judgement.unsafe}
    if flags == {True, False}:
        heads.append(HeadInfo(SAFE, "flag"))
    if not heads:
        raise RftkitError("the feedback holds no preferences, ratings or unsafe flags to learn from")
    return heads


def comparison_of(record: FeedbackRecord, answers: list[int], heads: list[HeadInfo]) -> Comparison:
    judgement, pairs, labels = record.judgement, [], []
    for k, head in enumerate(heads):
        if head.kind == "preference":
            values = [] if judgement.preferred is None else [float(i == judgement.preferred) for i in range(len(answers))]
        elif head.kind == "flag":
            values = [0.0 if flagged else 1.0 for flagged in judgement.unsafe]
        else:
            values = [r.get(head.name) for r in judgement.ratings] or []
        for i, value in enumerate(values):
            if value is not None:
                labels.append((k, answers[i], float(value)))
        for i, better in enumerate(values):
            for j, worse in enumerate(values):
                if better is not None and worse is not None and better > worse:
                    pairs.append((k, answers[i], answers[j]))
    return Comparison(answers, pairs, labels)


def build_data(records: list[FeedbackRecord], heads: list[HeadInfo], encode) -> FeedbackData:
    """Encode each distinct (item, answer) once; `encode(prompt, answer) -> ids`."""
    data, index = FeedbackData(), {}
    for record in records:
        item = record.item
        answers = []
        for position, answer in enumerate(item.answers):
            key = (item.item_id, position)
            if key not in index:
                index[key] = len(data.ids)
                data.ids.append(encode(item.prompt, answer.text))
            answers.append(index[key])
        comparison = comparison_of(record, answers, heads)
        if comparison.pairs or comparison.labels:
            data.comparisons.append(comparison)
    return data


def split_records(records: list[FeedbackRecord], holdout: float, seed: int) -> dict[str, list[FeedbackRecord]]:
    """train / calibration / test by item: `holdout` of the items held out, half for fitting
    calibration (and early stopping), half for the final test."""
    items = sorted({r.item.item_id for r in records})
    random.Random(seed).shuffle(items)
    held = round(len(items) * holdout)
    if holdout > 0 and len(items) >= 4:
        held = max(held, 2)
    calibration, test = set(items[: held - held // 2]), set(items[held - held // 2: held])
    split = {"train": [], "calibration": [], "test": []}
    for record in records:
        name = "calibration" if record.item.item_id in calibration else "test" if record.item.item_id in test else "train"
        split[name].append(record)
    if not split["train"]:
        raise RftkitError(f"only {len(items)} items: nothing left to train on after holding out {holdout:.0%}",
                          fix="collect more feedback or lower --holdout")
    return split


def label_target(head: HeadInfo, label: float) -> float:
    """A label as a target in [0, 1] (ratings scaled from 1-5)."""
    return (label - RATING_LOW) / (RATING_HIGH - RATING_LOW) if head.kind == "rating" else label
