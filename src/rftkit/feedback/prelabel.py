"""AI-judge pre-labels: a `score_model` or `label_model` grader labels items first, people
confirm or correct (`FeedbackStore.confirm`).

Each answer of an item is graded; the grader's score, scaled to [0, 1] by its range, gives
the pre-label: the preferred answer is the best-scored one (none on a tie), the rating of
`criterion` is 1 + round(4 x score), and with `unsafe_below` an answer scored under it is
flagged unsafe (a `label_model` asked "safe or unsafe?" gives 1 or 0). Pre-labels are stored
with status "prelabel" and source "ai"; training reads final judgements only.
"""

from __future__ import annotations

from dataclasses import dataclass

from rftkit.feedback.records import Judgement, now_iso
from rftkit.feedback.store import FeedbackStore
from rftkit.graders.base import Grader, GraderContext, build_grader
from rftkit.graders.batch import has_error
from rftkit.types import Sample


@dataclass(frozen=True)
class PrelabelResult:
    judgement_ids: list[int]
    skipped: dict[str, str]  # item id -> why (a grading error)


def judgement_from_scores(item_id: str, reviewer: str, scores: list[float], *, criterion: str | None = None,
                          unsafe_below: float | None = None) -> Judgement:
    """A pre-label from per-answer scores in [0, 1].

    >>> j = judgement_from_scores("q", "judge", [0.9, 0.2], criterion="accuracy", unsafe_below=0.5)
    >>> j.preferred, j.ratings, j.unsafe
    (0, [{'accuracy': 5}, {'accuracy': 2}], [False, True])
    >>> judgement_from_scores("q", "judge", [0.5, 0.5]).preferred is None
    True
    """
    best = max(scores)
    preferred = scores.index(best) if scores.count(best) == 1 else None
    ratings = [{criterion: 1 + round(4 * min(max(s, 0.0), 1.0))} for s in scores] if criterion else []
    unsafe = [s < unsafe_below for s in scores] if unsafe_below is not None else []
    return Judgement(item_id=item_id, reviewer=reviewer, preferred=preferred, ratings=ratings, unsafe=unsafe,
                     source="ai", status="prelabel", created_at=now_iso())


def scaled(grader: Grader, reward: float) -> float:
    """A reward in [0, 1]: score_model's by its range; other graders' are already there."""
    low, high = getattr(grader, "bounds", (0.0, 1.0))
    return (reward - low) / (high - low)


def prelabel(store: FeedbackStore, grader_spec: dict, *, criterion: str | None = None,
             unsafe_below: float | None = None, context: GraderContext | None = None,
             limit: int = 1000) -> PrelabelResult:
    """Pre-label up to `limit` items that this judge has not labelled yet."""
    grader = build_grader(grader_spec, context, source="judge")
    reviewer = f"judge:{grader.name}"
    if criterion is not None and criterion not in store.criteria():
        store.add_criterion(criterion)
    done = {j.item_id for j in store.judgements(status="prelabel", source="ai") if j.reviewer == reviewer}
    items = [i for i in store.items(limit=limit + len(done)) if i.item_id not in done][:limit]
    samples = [Sample(a.text) for i in items for a in i.answers]
    rows = [{"messages": i.prompt} for i in items for _ in i.answers]
    with grader:
        grades = grader.grade_many(samples, rows)
    ids, skipped, at = [], {}, 0
    for item in items:
        mine, at = grades[at: at + len(item.answers)], at + len(item.answers)
        failed = [g for g in mine if has_error(g)]
        if failed:
            errors = failed[0].metadata["errors"]
            skipped[item.item_id] = next(f"{k}: {errors.get(k + '_details', '')}" for k, v in errors.items() if v is True)
            continue
        judgement = judgement_from_scores(item.item_id, reviewer, [scaled(grader, g.reward) for g in mine],
                                          criterion=criterion, unsafe_below=unsafe_below)
        ids.append(store.record_judgement(judgement))
    return PrelabelResult(ids, skipped)
