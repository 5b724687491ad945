"""Agreement: between reviewers, and between an AI judge and the people it helps.

Two judgements of the same item are compared field by field: the preferred answer (a tie is
its own category), the unsafe flag of each answer, and each criterion's rating of each answer.
Percent agreement is reported with Cohen's kappa (agreement beyond chance; Cohen, 1960),
pooled over every pair of judgements that share an item. Ratings also get the mean absolute
difference, since 4 vs 5 is closer than 1 vs 5.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

from rftkit.feedback.records import Judgement


def cohen_kappa(first: list, second: list) -> float | None:
    """(p_observed - p_chance) / (1 - p_chance) over paired labels; None when undefined.

    >>> cohen_kappa([0, 0, 1, 1], [0, 0, 1, 0])
    0.5
    >>> cohen_kappa([1, 1], [1, 1]) is None   # chance agreement is already 1
    True
    """
    if not first or len(first) != len(second):
        return None
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second)) / n
    counts_a, counts_b = Counter(first), Counter(second)
    chance = sum(counts_a[label] * counts_b[label] for label in counts_a) / (n * n)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


def _fraction(pairs: list[tuple]) -> float | None:
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None


def compare(pairs: list[tuple[Judgement, Judgement]]) -> dict:
    """Agreement figures over pairs of judgements of the same items."""
    preferred = [(a.preferred, b.preferred) for a, b in pairs]
    unsafe = [(x, y) for a, b in pairs if a.unsafe and b.unsafe for x, y in zip(a.unsafe, b.unsafe)]
    ratings: dict[str, list[tuple[int, int]]] = {}
    for a, b in pairs:
        for ra, rb in zip(a.ratings, b.ratings):
            for criterion in sorted(set(ra) & set(rb)):
                ratings.setdefault(criterion, []).append((ra[criterion], rb[criterion]))
    return {
        "pairs": len(pairs),
        "preference_agreement": _fraction(preferred),
        "preference_kappa": cohen_kappa([str(a) for a, _ in preferred], [str(b) for _, b in preferred]),
        "unsafe_agreement": _fraction(unsafe),
        "unsafe_kappa": cohen_kappa([a for a, _ in unsafe], [b for _, b in unsafe]),
        "ratings": {
            c: {"pairs": len(v), "exact": _fraction(v), "mean_abs_diff": sum(abs(x - y) for x, y in v) / len(v),
                "kappa": cohen_kappa([x for x, _ in v], [y for _, y in v])}
            for c, v in ratings.items()
        },
    }


def agreement_report(judgements: list[Judgement]) -> dict:
    """`reviewers`: every pair of different people's final judgements of an item;
    `judge_vs_human`: each AI pre-label against each person's judgement of the same item."""
    by_item: dict[str, list[Judgement]] = {}
    for judgement in judgements:
        by_item.setdefault(judgement.item_id, []).append(judgement)
    human_pairs, judge_pairs = [], []
    for group in by_item.values():
        humans = [j for j in group if j.source == "human" and j.status == "final"]
        judges = [j for j in group if j.source == "ai"]
        human_pairs += [(a, b) for a, b in combinations(humans, 2) if a.reviewer != b.reviewer]
        judge_pairs += [(judge, human) for judge in judges for human in humans]
    corrected = [human for judge, human in judge_pairs if human.based_on == judge.judgement_id
                 and (human.preferred, human.ratings, human.unsafe) != (judge.preferred, judge.ratings, judge.unsafe)]
    confirmed = sum(1 for judge, human in judge_pairs if human.based_on == judge.judgement_id)
    return {
        "reviewers": compare(human_pairs),
        "judge_vs_human": {**compare(judge_pairs), "confirmed_unchanged": confirmed - len(corrected),
                           "corrected": len(corrected)},
        "reviewer_counts": dict(Counter(j.reviewer for j in judgements if j.source == "human")),
    }
