"""Asynchronous rollouts (`rftkit.asynchronous.max_staleness: 1`) on a tiny model: samples are
one optimizer step old, tagged with the version that drew them, corrected, never staler than
the bound, and a checkpoint taken with a batch in flight resumes on the same prompts."""

import pytest

from rftkit.config import parse_job
from rftkit.graders import build_grader
from rftkit.models.tiny import build_tiny
from rftkit.resolved import resolve_reinforcement
from rftkit.train.pipeline import AsyncRollouts
from rftkit.train.rl import RLTrainer
from rftkit.types import Example, Grade, Group, Sample, Trajectory

EXAMPLES = [Example([{"role": "user", "content": f"q{i}"}], {"i": i}) for i in range(12)]
GRADER = {"type": "python", "name": "vowels", "source": "def grade(sample, item):\n    t = sample['output_text']\n"
                                                      "    return sum(c in 'aeiou' for c in t) / max(len(t), 1)\n"}


def trainer(staleness: int = 1, steps: int = 5) -> RLTrainer:
    spec = parse_job({
        "model": "unused", "training_file": "unused", "seed": 1,
        "method": {"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {"batch_size": 4}}},
        "rftkit": {"group_size": 4, "learning_rate": 1e-2, "max_steps": steps, "lengths": {"max_completion_tokens": 12},
                   "asynchronous": {"max_staleness": staleness}},
    })
    model, tokenizer = build_tiny("tiny", seed=0)
    settings = resolve_reinforcement(spec, len(EXAMPLES), parameters=None)
    return RLTrainer(model, tokenizer, build_grader(GRADER), EXAMPLES, settings)


def test_samples_are_one_step_old_tagged_and_corrected():
    run = trainer()
    try:
        rows = []
        for _ in range(4):
            version = run.step_count
            outcome = run.step()
            ages = {version - s.trajectory.policy_version for g in outcome.groups for s in g.samples}
            rows.append((ages, outcome.metrics))
        assert [ages for ages, _ in rows] == [{0}, {1}, {1}, {1}]  # the first step samples synchronously
        assert [m["staleness_mean"] for _, m in rows] == [0.0, 1.0, 1.0, 1.0]
        assert all(m["stale_dropped_frac"] == 0.0 for _, m in rows)
        # the old log-probs are recomputed under the current policy and the samples importance-weighted
        assert run.correction == "token" and all("is_ratio_mean" in m and "time_old_log_prob" in m for _, m in rows)
        assert all(m.get("time_gen_async", 0) > 0 for _, m in rows[1:])  # sampled by the worker
    finally:
        run.close()


def test_the_synchronous_trainer_has_no_worker():
    run = trainer(staleness=0)
    assert run.rollouts is None and run.correction is None
    assert "staleness_mean" not in run.step().metrics


def sample(version: int) -> Sample:
    return Sample("a", trajectory=Trajectory.single_turn([1], [2], [0.0], "stop", version))


def test_groups_staler_than_the_bound_are_dropped():
    groups = [Group(EXAMPLES[0], [1], [sample(5), sample(5)], [Grade(1.0), Grade(0.0)]),
              Group(EXAMPLES[1], [1], [sample(4), sample(3)], [Grade(1.0), Grade(0.0)])]
    kept, metrics = AsyncRollouts.fresh(groups, version=6, max_staleness=2)
    assert kept == groups[:1]  # a sample three steps old takes its group out
    assert metrics == {"staleness_mean": pytest.approx((1 + 1 + 2 + 3) / 4), "stale_dropped_frac": 0.5}


def test_a_checkpoint_with_a_batch_in_flight_resumes_on_its_prompts():
    first = trainer()
    try:
        first.step()
        first.step()
        in_flight = first.rollouts.pending
        state = first.state_dict()
        assert state["order"] == in_flight.order_before  # not the order after the batch in flight
        expected = [g.example for g in in_flight.future.result()[0]]
    finally:
        first.close()
    second = trainer()
    try:
        second.load_state_dict(state)
        outcome = second.step()
        assert [g.example for g in outcome.groups] == expected
        assert outcome.metrics["staleness_mean"] == 0.0  # nothing was in flight for it: sampled now
    finally:
        second.close()


def test_an_engine_that_samples_elsewhere_is_refused():
    from rftkit.errors import RftkitError
    from rftkit.rollout.engine import Engine

    class Remote(Engine):
        name = "openai"

    asynchronous = trainer(staleness=1)
    asynchronous.close()
    with pytest.raises(RftkitError, match="asynchronous rollouts need an in-process engine"):
        RLTrainer(asynchronous.model, asynchronous.tokenizer, asynchronous.grader, EXAMPLES,
                  asynchronous.settings, engine=Remote())
