"""Rollout and grader actors on a real local Ray instance, against the same trainer in one process.

Each test drives `RLTrainer` with the engine and grader of `RayRoles` (2 rollout actors, 1 grader
actor) and compares the sampled tokens and rewards with those of the in-process engine for the
same seed; the failure tests kill an actor's process between steps.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
import torch

from rftkit.config import LoraOptions, RayOptions, parse_job
from rftkit.errors import RftkitError
from rftkit.graders import GraderContext, build_grader
from rftkit.models.load import wrap_lora
from rftkit.models.tiny import build_tiny
from rftkit.resolved import resolve_reinforcement
from rftkit.rollout.engine import EngineUnavailable, local_engine
from rftkit.rollout.groups import sample_groups
from rftkit.scale.ray_cluster import RayCluster, probe, require_ray
from rftkit.scale.ray_ranks import TrainerRank, rank_devices
from rftkit.scale.roles import RayRoles
from rftkit.train.job_rollout import JobRollout
from rftkit.train.rl import RLTrainer
from rftkit.types import Example, SamplingParams

EXAMPLES = [Example([{"role": "user", "content": f"say something with an a, take {i}"}], {"i": i}) for i in range(12)]
GRADER = {"type": "string_check", "name": "has a", "input": "{{ sample.output_text }}", "reference": "a",
          "operation": "like"}
SPEC = parse_job({
    "model": "unused", "training_file": "unused", "seed": 5,
    "method": {"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {"batch_size": 5}}},
    "rftkit": {"group_size": 4, "learning_rate": 1e-2, "max_steps": 3, "lengths": {"max_completion_tokens": 12}},
})
STEPS = 2


def tokens(outcome) -> list[list[int]]:
    return [s.trajectory.completion_ids for g in outcome.groups for s in g.samples]


def rewards(outcome) -> list[list[float]]:
    return [g.rewards for g in outcome.groups]


def trainer(roles: RayRoles | None = None, lora: bool = False) -> RLTrainer:
    """The tiny trainer of these tests; `roles`: its engine and grader on Ray actors; `lora`: the
    policy wrapped in a LoRA adapter (then only the adapter travels to the actors)."""
    torch.manual_seed(0)
    model, tokenizer = build_tiny("tiny", seed=0)
    if lora:
        model = wrap_lora(model, LoraOptions(enabled=True, r=4, alpha=8))
    settings = resolve_reinforcement(SPEC, len(EXAMPLES), parameters=None)
    if roles is None:
        return RLTrainer(model, tokenizer, build_grader(GRADER), EXAMPLES, settings)
    grader = roles.grader(JobRollout(sample_groups, GRADER), GraderContext())
    engine = roles.engine(SPEC.rftkit, model, tokenizer, model_path=None, work_dir=None)
    return RLTrainer(model, tokenizer, grader, EXAMPLES, settings, engine=engine)


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray")
    torch.set_flush_denormal(True)
    # 2 GPUs declared, whether or not the machine has them: placing GPU bundles is Ray's bookkeeping
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_process():
    """The steps of the in-process trainer: what the actors must reproduce."""
    run = trainer()
    return [run.step() for _ in range(STEPS)]


@pytest.fixture(scope="module")
def one_process_lora():
    run = trainer(lora=True)
    return [run.step() for _ in range(STEPS)]


@pytest.fixture
def roles(ray, request):
    options = RayOptions(**getattr(request, "param", {}))
    made = RayRoles(None, options)  # this process is connected already: the roles use that connection
    yield made
    made.close()


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)  # let Ray see the actor's death before the next call


def test_actors_sample_and_grade_what_one_process_does(roles, one_process_lora):
    run = trainer(roles, lora=True)
    steps = [run.step() for _ in range(STEPS)]
    for mine, theirs in zip(steps, one_process_lora):
        assert tokens(mine) == tokens(theirs)
        assert rewards(mine) == rewards(theirs)
        for key, value in theirs.metrics.items():
            if not key.startswith("time_") and key not in ("samples_per_s", "tokens_per_s"):
                assert mine.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert len(set(run.engine.actors.pids())) == 2 and os.getpid() not in run.engine.actors.pids()
    assert any(r > 0 for g in rewards(steps[0]) for r in g) and run.engine.version == STEPS - 1


def test_generate_leaves_the_generator_where_one_process_leaves_it(roles):
    """Multi-turn episodes draw a later turn from the generator an earlier turn used: after a call
    it must be where one process leaves it, at the state of the actor that decoded the most steps."""
    model, tokenizer = build_tiny("tiny", seed=0)
    head = model.get_output_embeddings().weight
    with torch.no_grad():  # an end-of-turn token likely enough that the actors' shares stop at different steps
        head[tokenizer.eos_token_id] += 2.0 * torch.randn(head.shape[1], generator=torch.Generator().manual_seed(1))
    engine = roles.engine(SPEC.rftkit, model, tokenizer, model_path=None, work_dir=None)
    engine.update_weights(model, 0)
    params = SamplingParams(max_new_tokens=20, temperature=1.0)
    for order in (["take 3", "take 1"], ["take 1", "take 3"]):  # one prompt, so one share, per actor
        prompts = [tokenizer.encode(text) for text in order]
        ours, theirs = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
        on_actors = engine.generate(prompts, params, n=3, generator=ours)
        in_process = local_engine(model, tokenizer).generate(prompts, params, n=3, generator=theirs)
        assert [[c.token_ids for c in g] for g in on_actors] == [[c.token_ids for c in g] for g in in_process]
        steps = [max(len(c.token_ids) for c in group) for group in in_process]
        assert steps[0] != steps[1], steps  # the shares decoded different numbers of steps
        assert torch.equal(ours.get_state(), theirs.get_state()), order


def test_a_killed_rollout_actor_is_restarted_and_samples_the_same_tokens(roles, one_process):
    run = trainer(roles)
    first = run.step()
    run.sync_engine()  # step 1's weights reach the actors now: the next call to die is a generate
    before = run.engine.actors.pids()
    kill(before[0])
    second = run.step()  # actor 0's share is retried on a fresh actor, which loads step 1's weights first
    assert tokens(first) == tokens(one_process[0])
    assert tokens(second) == tokens(one_process[1]) and rewards(second) == rewards(one_process[1])
    after = run.engine.actors.pids()
    assert after[0] != before[0] and after[1] == before[1]


@pytest.mark.parametrize("roles", [{"restarts": 0}], indirect=True)
def test_a_killed_grader_actor_without_restarts_stops_the_step_and_puts_it_back(roles):
    run = trainer(roles)
    run.step()
    order = run.order.state_dict()
    kill(run.grader.actors.pids()[0])
    with pytest.raises(EngineUnavailable, match=r"grader actor 0 died \(grade_many, 0 restart"):
        run.step()
    assert run.step_count == 1 and run.order.state_dict() == order  # the step runs again on resume


@pytest.mark.parametrize("roles", [{"call_timeout_s": 0.5}], indirect=True)
def test_an_actor_that_does_not_answer_in_time_is_restarted_once_then_the_step_stops(roles):
    run = trainer(roles)  # a fresh actor takes seconds to start (torch, the policy): longer than 0.5 s
    with pytest.raises(EngineUnavailable, match=r"rollout actor \d did not answer within 0.5 s; then its restart "
                                                r"did not answer within 0.5 s \(load, 1 restart"):
        run.step()
    assert run.step_count == 0


def test_a_placement_the_cluster_cannot_hold_names_the_cpus_it_waits_for(ray):
    with pytest.raises(RftkitError, match=r"could not place 3 actors of 50 CPU each \(150 CPUs .*within 1 s: "
                                          r"the cluster has [\d.]+ of 4 CPUs free"):
        RayRoles(None, RayOptions(cpus_per_actor=50, placement_timeout_s=1))
    assert ray.is_initialized()  # a process that was connected stays connected


def test_trainer_ranks_on_cuda_each_reserve_a_gpu_and_see_their_nodes_gpus(ray):
    placement = RayCluster.connect(None, 2.0).place(2, 1.0, 30, gpus_per_bundle=1)
    try:
        actors = [ray.remote(TrainerRank).options(**placement.options(k)).remote() for k in range(2)]
        addresses = ray.get([actor.address.remote() for actor in actors], timeout=120)
        assert sorted(gpu for _, _, gpus in addresses for gpu in gpus) == ["0", "1"]  # one each, none shared
        devices = rank_devices([(node, gpus) for node, _, gpus in addresses])
        assert sorted(local for local, _ in devices) == [0, 1] and {visible for _, visible in devices} == {"0,1"}
        for (_, _, gpus), (local, visible) in zip(addresses, devices):
            assert visible.split(",")[local] == gpus[0]  # cuda:LOCAL_RANK is the GPU Ray gave the rank
    finally:
        placement.close()
    with pytest.raises(RftkitError, match=r"could not place 2 actors of 1 CPU and 2 GPU each \(2 CPUs and 4 GPUs "
                                          r".*the cluster has [\d.]+ of 4 CPUs free; [\d.]+ of 2 GPUs free"):
        RayCluster.connect(None, 2.0).place(2, 1.0, 1, gpus_per_bundle=2)


def test_an_address_nothing_answers_at_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(RftkitError, match="cannot reach the Ray cluster at 127.0.0.1:1: ") as caught:
        probe("127.0.0.1:1")
    assert time.monotonic() - started < 5 and "\n" not in str(caught.value)
    with pytest.raises(RftkitError, match="not a Ray address"):
        probe("nowhere")


def test_without_ray_installed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as where it is not installed
    with pytest.raises(RftkitError, match=r"pip install 'rftkit\[ray\]'"):
        require_ray()
