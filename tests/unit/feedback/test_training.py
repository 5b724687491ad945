"""Reward-model training on a tiny model: it learns, calibrates, saves, and loads back."""

import json

import pytest
import torch

from rm_helpers import polite_feedback, train_polite_rm
from rftkit.errors import RftkitError
from rftkit.feedback.dataset import build_data, heads_for, split_records
from rftkit.models.reward import load_reward_model
from rftkit.feedback.records import Answer, ComparisonItem, FeedbackRecord, Judgement, read_feedback_jsonl


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_dir):
    out = tmp_path_factory.mktemp("rm") / "rm"
    return out, train_polite_rm(out, tiny_dir)


def test_training_learns_every_head_and_writes_its_report(trained):
    out, metrics = trained
    for name in ("preference", "tone", "safe"):
        head = metrics["heads"][name]
        assert head["pairs"] >= 6 and head["pairwise_accuracy"] >= 0.9, (name, head)
    assert metrics["heads"]["tone"]["correlation"] > 0.8
    assert metrics["split"] == "test" and metrics["split_sizes"]["train"] > 0
    assert json.loads((out / "metrics.json").read_text())["heads"] == metrics["heads"]
    report = (out / "report.md").read_text()
    assert "| preference | preference |" in report and "ECE calibrated" in report


def test_a_saved_reward_model_loads_back_and_scores_the_same(trained):
    out, _ = trained
    model = load_reward_model(out, "cpu")
    prompts = [[{"role": "user", "content": "2+2="}]] * 2
    scores = model.score(prompts, ["4 thank you", "4 damn"])
    assert scores[0]["preference"] > 0.5 > scores[1]["preference"]
    assert scores[0]["safe"] > scores[1]["safe"]
    assert all(0.0 <= v <= 1.0 for row in scores for v in row.values())
    again = load_reward_model(out, "cpu").score(prompts, ["4 thank you", "4 damn"])
    assert again == scores
    meta = json.loads((out / "reward_model.json").read_text())
    assert [h["name"] for h in meta["heads"]] == ["preference", "tone", "safe"]
    assert all(h["calibration"]["method"] == "platt" for h in meta["heads"])


def record(item_id, answers, **judgement):
    return FeedbackRecord(ComparisonItem(item_id, [{"role": "user", "content": "q"}], [Answer(a) for a in answers]),
                          Judgement(item_id, "ann", **judgement))


def test_judgements_become_pairs_and_labels_per_head():
    records = [record("a", ["x", "y", "z"], preferred=1, ratings=[{"tone": 2}, {"tone": 5}, {"tone": 2}],
                      unsafe=[True, False, False])]
    heads = heads_for(records)
    assert [(h.name, h.kind) for h in heads] == [("preference", "preference"), ("tone", "rating"), ("safe", "flag")]
    data = build_data(records, heads, lambda prompt, answer: [ord(answer)])
    [comparison] = data.comparisons
    assert data.ids == [[ord("x")], [ord("y")], [ord("z")]]
    assert sorted(p for p in comparison.pairs if p[0] == 0) == [(0, 1, 0), (0, 1, 2)]  # y beats x and z
    assert sorted(p for p in comparison.pairs if p[0] == 1) == [(1, 1, 0), (1, 1, 2)]  # tone 5 beats both 2s
    assert sorted(p for p in comparison.pairs if p[0] == 2) == [(2, 1, 0), (2, 2, 0)]  # safe beats unsafe
    assert (1, 0, 2.0) in comparison.labels and (2, 0, 0.0) in comparison.labels


def test_split_is_by_item_and_needs_something_to_train_on():
    records = [record(f"i{n // 2}", ["x", "y"], preferred=0) for n in range(40)]  # two judgements per item
    split = split_records(records, 0.3, seed=0)
    items = {name: {r.item.item_id for r in rows} for name, rows in split.items()}
    assert not (items["train"] & items["calibration"]) and not (items["train"] & items["test"])
    assert len(items["calibration"]) == 3 and len(items["test"]) == 3
    with pytest.raises(RftkitError, match="nothing left to train on"):
        split_records(records[:2], 0.9, seed=0)


def test_unknown_criteria_are_refused(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in polite_feedback(4)))
    with pytest.raises(RftkitError, match="criteria: no ratings for accuracy in the feedback"):
        heads_for(read_feedback_jsonl(path), ["accuracy"])


def test_the_bradley_terry_gradient_reaches_the_body(tiny_dir):
    from rftkit.models.reward import HeadInfo, new_reward_model
    from rftkit.feedback.training import RMOptions, batch_loss

    records = [record("a", ["good", "bad"], preferred=0)]
    model = new_reward_model(str(tiny_dir), [HeadInfo("preference", "preference")], device="cpu")
    data = build_data(records, model.heads, model.encode)
    batch_loss(model, data, data.comparisons, RMOptions()).backward()
    body_grad = sum(float(p.grad.abs().sum()) for p in model.body.parameters() if p.grad is not None)
    assert body_grad > 0 and float(model.head.weight.grad.abs().sum()) > 0
    assert torch.isfinite(model.head.weight.grad).all()
