"""The baseline's rule, on hand-made results: abort only when no sample earns any reward."""

import pytest

from rftkit.config import parse_job
from rftkit.errors import RftkitError
from rftkit.eval.passk import EvalResult
from rftkit.resolved import resolve_reinforcement
from rftkit.train.rl_job import baseline_verdict


def result(pass_at_k: float) -> EvalResult:
    return EvalResult(k=4, prompts=3, pass_at_1=pass_at_k / 4, pass_at_k=pass_at_k, reward_mean=0.1)


def spread(maximum: float, share: float = 0.5) -> dict:
    return {"mean": maximum / 2, "max": maximum, "positive_share": share}


def test_no_reward_at_all_stops_the_job_unless_forced():
    with pytest.raises(RftkitError, match="pass@4 is 0 and no sample earns any reward on 3 validation prompts"):
        baseline_verdict(result(0.0), spread(0.0, 0.0), 1.0, "validation prompts", force=False)
    assert baseline_verdict(result(0.0), spread(0.0, 0.0), 1.0, "validation prompts", force=True) is None


def test_partial_reward_under_the_threshold_warns_and_trains():
    warning = baseline_verdict(result(0.0), spread(0.4, 0.25), 1.0, "training prompts", force=False)
    assert "no sample reaches the pass threshold 1 on 3 training prompts" in warning
    assert "25% earn partial reward (mean 0.200, max 0.400)" in warning


def test_a_pass_is_quiet():
    assert baseline_verdict(result(0.5), spread(1.0), 1.0, "validation prompts", force=False) is None


def job(grader: dict, **eval_options) -> dict:
    return {"model": "m", "training_file": "t.jsonl", "rftkit": {"eval": eval_options},
            "method": {"type": "reinforcement", "reinforcement": {"grader": grader}}}


def test_pass_threshold_defaults_to_the_graders_own():
    similarity = {"type": "text_similarity", "input": "x", "reference": "y", "evaluation_metric": "bleu",
                  "pass_threshold": 0.6}
    assert resolve_reinforcement(parse_job(job(similarity)), rows=4, parameters=None).pass_threshold == 0.6
    assert resolve_reinforcement(parse_job(job(similarity, pass_threshold=0.3)), rows=4, parameters=None).pass_threshold == 0.3
    assert resolve_reinforcement(parse_job(job({"type": "string_check"})), rows=4, parameters=None).pass_threshold == 1.0
