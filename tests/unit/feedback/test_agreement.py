"""Agreement between reviewers and between judge and people, by hand."""

import pytest

from rftkit.feedback.agreement import agreement_report, cohen_kappa
from rftkit.feedback.records import Judgement


def test_cohen_kappa_by_hand():
    # observed 3/4; chance: rater 1 says A 2/4, rater 2 says A 3/4 -> 0.5*0.75 + 0.5*0.25 = 0.5
    assert cohen_kappa(["A", "A", "B", "B"], ["A", "A", "B", "A"]) == pytest.approx(0.5)
    assert cohen_kappa(["A", "B"], ["B", "A"]) == pytest.approx(-1.0)
    assert cohen_kappa([], []) is None


def test_report_pairs_reviewers_per_item_and_the_judge_with_each_person():
    judgements = [
        Judgement("q1", "ann", preferred=0, ratings=[{"tone": 5}, {"tone": 2}], unsafe=[False, True]),
        Judgement("q1", "bob", preferred=0, ratings=[{"tone": 4}, {"tone": 2}], unsafe=[False, False]),
        Judgement("q2", "ann", preferred=1),
        Judgement("q2", "bob", preferred=0),
        Judgement("q2", "ann", preferred=1, comment="same reviewer twice is not agreement"),
        Judgement("q1", "judge:j", preferred=0, source="ai", status="prelabel"),
    ]
    report = agreement_report(judgements)
    reviewers = report["reviewers"]
    assert reviewers["pairs"] == 3  # q1 ann-bob; q2 ann-bob twice (ann judged it twice)
    assert reviewers["preference_agreement"] == pytest.approx(1 / 3)
    assert reviewers["unsafe_agreement"] == pytest.approx(1 / 2)  # answer 0 agrees, answer 1 does not
    assert reviewers["ratings"]["tone"]["exact"] == pytest.approx(1 / 2)
    assert reviewers["ratings"]["tone"]["mean_abs_diff"] == pytest.approx(1 / 2)
    judge = report["judge_vs_human"]
    assert judge["pairs"] == 2 and judge["preference_agreement"] == 1.0
    assert report["reviewer_counts"] == {"ann": 3, "bob": 2}
