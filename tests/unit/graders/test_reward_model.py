"""The reward_model grader: weighted criteria as sub-rewards, ensembles, errors, and a real
PPO run graded by a trained reward model."""

import json

import pytest
import torch

from rm_helpers import train_polite_rm
from rftkit.errors import RftkitError
from rftkit.graders import GraderContext, build_grader, grade_batch
from rftkit.graders.reward_model import DISAGREEMENT, combine
from rftkit.types import Sample

ITEM = {"messages": [{"role": "user", "content": "2+3="}]}


@pytest.fixture(scope="module")
def rm_dirs(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("rms")
    train_polite_rm(root / "a", tiny_dir, seed=0)
    train_polite_rm(root / "b", tiny_dir, seed=1, epochs=1)
    return root / "a", root / "b"


def test_combine_by_hand():
    score = combine([{"a": 0.8, "b": 0.2}], {"a": 0.6, "b": 0.4})
    assert score.reward == pytest.approx(0.56) and score.sub_rewards == pytest.approx({"a": 0.8, "b": 0.2})
    ensemble = combine([{"a": 1.0}, {"a": 0.0}], {"a": 1.0})
    assert ensemble.reward == 0.5 and ensemble.sub_rewards[DISAGREEMENT] == 0.5
    assert ensemble.scores["members"] == [1.0, 0.0]


def test_scores_a_batch_with_each_criterion_a_sub_reward(rm_dirs):
    grader = build_grader({"type": "reward_model", "name": "rm", "path": str(rm_dirs[0]),
                           "criteria": {"preference": 0.6, "safe": 0.4}})
    samples = [Sample("5 thank you"), Sample("5 damn")]
    graded = grade_batch(grader, samples, [ITEM, ITEM])
    polite, rude = graded.grades
    assert polite.reward > rude.reward
    assert set(polite.sub_rewards) == {"preference", "safe"}
    assert polite.reward == pytest.approx(0.6 * polite.sub_rewards["preference"] + 0.4 * polite.sub_rewards["safe"])
    assert polite.sub_rewards["safe"] > 0.5 > rude.sub_rewards["safe"]
    assert set(graded.stats()) == {"rm", "preference", "safe"}  # per-criterion means reach the metrics
    single = grader.grade(samples[1], ITEM)
    assert single.reward == pytest.approx(rude.reward, abs=1e-6)


def test_an_ensemble_reports_its_disagreement(rm_dirs):
    same = build_grader({"type": "reward_model", "path": [str(rm_dirs[0]), str(rm_dirs[0])]})
    assert same.grade(Sample("5 thank you"), ITEM).sub_rewards[DISAGREEMENT] == pytest.approx(0.0, abs=1e-9)
    mixed = build_grader({"type": "reward_model", "path": [str(rm_dirs[0]), str(rm_dirs[1])]})
    grade = mixed.grade(Sample("5 damn"), ITEM)
    members = grade.metadata["scores"]["members"]
    assert len(members) == 2 and members[0] != members[1]
    assert grade.sub_rewards[DISAGREEMENT] == pytest.approx(abs(members[0] - members[1]) / 2)
    assert grade.reward == pytest.approx(sum(members) / 2)


def test_bad_specs_fail_before_any_model_loads(rm_dirs, tmp_path):
    with pytest.raises(RftkitError, match=r"criteria: .* has no head 'helpfulness' — use its heads: preference, tone, safe"):
        build_grader({"type": "reward_model", "path": str(rm_dirs[0]), "criteria": {"helpfulness": 1}})
    with pytest.raises(RftkitError, match="not a reward model directory"):
        build_grader({"type": "reward_model", "path": str(tmp_path)})
    with pytest.raises(RftkitError, match="weights are >= 0"):
        build_grader({"type": "reward_model", "path": str(rm_dirs[0]), "criteria": {"safe": -1}})
    relative = build_grader({"type": "reward_model", "path": rm_dirs[0].name},
                            GraderContext(base_dir=rm_dirs[0].parent))
    assert relative.paths == [rm_dirs[0]]


def test_an_item_without_messages_scores_zero_with_the_error_named(rm_dirs):
    grader = build_grader({"type": "reward_model", "path": str(rm_dirs[0])})
    good, bad = grader.grade_many([Sample("5"), Sample("5")], [ITEM, {"answer": "5"}])
    assert good.metadata["errors"]["invalid_variable_error"] is False
    assert bad.reward == 0.0 and bad.metadata["errors"]["invalid_variable_error"] is True


def test_ppo_against_the_reward_model_trains_and_logs_each_criterion(rm_dirs, tiny_dir, tmp_path):
    from helpers import write_jsonl
    from rftkit.config import parse_job
    from rftkit.train.rl_job import run_reinforcement_job

    write_jsonl(tmp_path / "train.jsonl", [{"messages": [{"role": "user", "content": f"{i}+1="}]} for i in range(4)])
    job = parse_job({
        "model": str(tiny_dir), "training_file": str(tmp_path / "train.jsonl"), "seed": 0,
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": {"type": "reward_model", "name": "rm", "path": str(rm_dirs[0]),
                       "criteria": {"preference": 0.5, "safe": 0.5}},
            "hyperparameters": {"batch_size": 2}}},
        "rftkit": {"algorithm": "ppo", "group_size": 2, "learning_rate": 1e-3, "max_steps": 2, "device": "cpu",
                   "ppo": {"epochs": 1}, "kl": {"coef": 0.1, "placement": "reward"},
                   "lengths": {"max_completion_tokens": 6}, "eval": {"baseline": False}},
    })
    summary = run_reinforcement_job(job, tmp_path / "run", log=lambda message: None)
    assert summary.status == "succeeded" and summary.steps == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_grader_rm_mean", "train_grader_preference_mean", "train_grader_safe_mean", "kl", "value_loss"):
        assert key in rows[-1], key
    assert rows[0]["train_grader_rm_error_rate"] == 0.0
    assert 0.0 < rows[0]["train_reward_mean"] < 1.0
    from rftkit.models.load import load_policy

    before, _ = load_policy(str(tiny_dir), "cpu")
    after, _ = load_policy(summary.model_dir, "cpu")
    moved = [not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters())]
    assert any(moved)
