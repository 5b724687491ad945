"""Asynchronous rollouts (`rftkit.asynchronous.max_staleness: 1`) on a tiny model: samples are
one optimizer step old, tagged with the version that drew them, corrected, never staler than
the bound, and a checkpoint taken with a batch in flight resumes on the same prompts. An engine
that samples elsewhere samples the next batch itself, and the trainer never races it."""

import threading
import time

import pytest
import torch

from rftkit.config import parse_job
from rftkit.graders import build_grader
from rftkit.models.tiny import build_tiny
from rftkit.resolved import resolve_reinforcement
from rftkit.rollout.engine import EngineContext, EngineUnavailable
from rftkit.rollout.local import HFEngine
from rftkit.train.pipeline import AsyncRollouts
from rftkit.train.rl import RLTrainer, frozen_copy
from rftkit.types import Example, Grade, Group, Sample, Trajectory

EXAMPLES = [Example([{"role": "user", "content": f"q{i}"}], {"i": i}) for i in range(12)]
GRADER = {"type": "python", "name": "vowels", "source": "def grade(sample, item):\n    t = sample['output_text']\n"
                                                      "    return sum(c in 'aeiou' for c in t) / max(len(t), 1)\n"}
RARE = {"type": "python", "name": "an e", "source": "def grade(sample, item):\n"
                                                   "    return float('e' in sample['output_text'])\n"}


def trainer(staleness: int = 1, steps: int = 5, grader: dict = GRADER, **rftkit) -> RLTrainer:
    spec = parse_job({
        "model": "unused", "training_file": "unused", "seed": 1,
        "method": {"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": {"batch_size": 4}}},
        "rftkit": {"group_size": 4, "learning_rate": 1e-2, "max_steps": steps, "lengths": {"max_completion_tokens": 12},
                   "asynchronous": {"max_staleness": staleness}, **rftkit},
    })
    model, tokenizer = build_tiny("tiny", seed=0)
    settings = resolve_reinforcement(spec, len(EXAMPLES), parameters=None)
    return RLTrainer(model, tokenizer, build_grader(grader), EXAMPLES, settings)


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


class Elsewhere(HFEngine):
    """The hf engine over a copy of its own, as a server or Ray actors hold one: weights come
    only through `update_weights`. It counts what must never happen: weights pushed while a
    batch is being sampled, or two threads sampling at once."""

    name = "elsewhere"
    exact_logprobs = False

    holds_own_weights = True

    def __init__(self, model, tokenizer):
        super().__init__(EngineContext(frozen_copy(model), tokenizer))
        self.lock, self.active, self.clashes, self.threads = threading.Lock(), 0, [], set()
        self.in_flight = threading.Event()  # set when the worker starts a batch

    def generate(self, *args, **kwargs):
        thread = threading.current_thread().name.split("_")[0]
        with self.lock:
            self.active += 1
            if self.active > 1:
                self.clashes.append("two threads sampling")
            self.threads.add(thread)
        try:
            if thread == "rftkit-rollout":
                self.in_flight.set()
                time.sleep(0.3)  # so that the trainer's next use of the engine certainly finds a batch in flight
            return super().generate(*args, **kwargs)
        finally:
            with self.lock:
                self.active -= 1

    def update_weights(self, model, version):
        with self.lock:
            if self.active:
                self.clashes.append(f"weights of version {version} pushed mid-batch")
        if version != self.version:
            self.model.load_state_dict(model.state_dict())
            self.version = version


def test_an_engine_that_samples_elsewhere_samples_the_next_batch_itself_and_is_never_raced():
    spec = {"dynamic_sampling": {"enabled": True, "max_rounds": 3}}  # refill rounds use the engine mid-step
    run = trainer(steps=6, grader=RARE, **spec)
    engine = Elsewhere(run.model, run.tokenizer)
    run.close()
    threads = torch.get_num_threads()
    run = RLTrainer(run.model, run.tokenizer, run.grader, EXAMPLES, run.settings, engine=engine)
    try:
        assert run.rollouts.shared and run.rollouts.engine is engine and torch.get_num_threads() == threads
        ages = []
        for _ in range(5):
            version = run.step_count
            outcome = run.step()
            ages.append({version - s.trajectory.policy_version for g in outcome.groups[:1] for s in g.samples})
            in_flight = run.rollouts.pending
            if in_flight is not None:
                assert engine.in_flight.wait(10)
                engine.in_flight.clear()
            run.sync_engine()  # as validation does after a step: waits for the batch in flight, then pushes
            assert in_flight is None or in_flight.future.done()
            assert engine.version == run.step_count
        assert ages == [{0}, {1}, {1}, {1}, {1}]  # the first round's groups: drawn in the background
        assert engine.clashes == [] and engine.threads == {"MainThread", "rftkit-rollout"}
        assert run.correction == "token"
    finally:
        run.close()


def test_an_engine_that_neither_runs_here_nor_holds_its_own_weights_is_refused():
    from rftkit.errors import RftkitError
    from rftkit.rollout.engine import Engine

    class OverTheLivePolicy(Engine):
        name = "custom"

    asynchronous = trainer(staleness=1)
    asynchronous.close()
    with pytest.raises(RftkitError, match="does not say it samples from weights of its own"):
        RLTrainer(asynchronous.model, asynchronous.tokenizer, asynchronous.grader, EXAMPLES,
                  asynchronous.settings, engine=OverTheLivePolicy())


class FailsOnTheTrainersThread(Elsewhere):
    """Stops answering the trainer's own calls (a refill round) once `down` is set."""

    down = False

    def generate(self, *args, **kwargs):
        if self.down and threading.current_thread() is threading.main_thread():
            raise EngineUnavailable("the server stopped answering")
        return super().generate(*args, **kwargs)


def test_a_step_that_fails_midway_puts_back_the_prompts_drawn_for_it_in_the_background():
    run = trainer(steps=6, grader=RARE, dynamic_sampling={"enabled": True, "max_rounds": 3})
    engine = FailsOnTheTrainersThread(run.model, run.tokenizer)
    run.close()
    run = RLTrainer(run.model, run.tokenizer, run.grader, EXAMPLES, run.settings, engine=engine)
    try:
        run.step()  # synchronous, and starts step 2's batch
        before_step_2 = run.rollouts.pending.order_before
        engine.down = True
        with pytest.raises(EngineUnavailable):
            run.step()  # its background batch arrives; a refill round fails, with step 3's batch in flight
        assert run.rollouts.pending is None and run.step_count == 1
        assert run.state_dict()["order"] == before_step_2  # a resume samples step 2's prompts again
    finally:
        run.close()
