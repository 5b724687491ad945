"""The RL step on tiny models: rewards rise, parameters move, and the invariants hold."""

import math
from typing import Literal

import pytest
import torch

from rftkit.config import LoraOptions, parse_job
from rftkit.graders import build_grader
from rftkit.graders.base import REGISTRY, Grader, GraderSpec, register
from rftkit.models.load import wrap_lora
from rftkit.models.tiny import build_tiny
from rftkit.train.critic import ValueModel
from rftkit.resolved import resolve_reinforcement
from rftkit.train.rl import RLTrainer
from rftkit.types import Example


class SevensSpec(GraderSpec):
    type: Literal["test_sevens"]


class ConstantSpec(GraderSpec):
    type: Literal["test_constant"]


if "test_sevens" not in REGISTRY:

    @register("test_sevens")
    class Sevens(Grader):
        """Dense toy reward: the share of the completion's characters that are '7'."""

        spec_model = SevensSpec

        def score(self, sample, item):
            return sample.output_text.count("7") / max(len(sample.output_text), 1)

    @register("test_constant")
    class Constant(Grader):
        spec_model = ConstantSpec

        def score(self, sample, item):
            return 0.5


EXAMPLES = [Example([{"role": "user", "content": f"q{i}"}], {"i": i}) for i in range(16)]


def make_trainer(algorithm="grpo", grader="test_sevens", steps=12, lora=False, dtype=torch.float32, **rftkit):
    spec = parse_job({
        "model": "unused", "training_file": "unused", "seed": 0,
        "method": {"type": "reinforcement", "reinforcement": {"grader": {"type": grader}, "hyperparameters": {"batch_size": 4}}},
        "rftkit": {"algorithm": algorithm, "group_size": 8, "learning_rate": 1e-2, "max_steps": steps,
                   "lengths": {"max_completion_tokens": 8}, **rftkit},
    })
    model, tokenizer = build_tiny("tiny", seed=0)
    model = model.to(dtype)
    critic = ValueModel.from_policy(model) if algorithm == "ppo" else None
    if lora:
        model = wrap_lora(model, LoraOptions(enabled=True, r=8, alpha=16))
    settings = resolve_reinforcement(spec, len(EXAMPLES), parameters=None)
    return RLTrainer(model, tokenizer, build_grader({"type": grader}), EXAMPLES, settings, critic=critic)


def params_of(model):
    return [p.detach().clone() for p in model.parameters() if p.requires_grad]


def test_grpo_raises_reward_and_moves_parameters():
    trainer = make_trainer()
    before = params_of(trainer.model)
    rewards = [trainer.step().metrics["train_reward_mean"] for _ in range(12)]
    assert rewards[0] < 0.1
    assert max(rewards[-3:]) > 0.6, rewards
    assert any(not torch.equal(a, b) for a, b in zip(before, params_of(trainer.model)))


def test_ppo_raises_reward():
    trainer = make_trainer("ppo", steps=12)
    rewards = [trainer.step().metrics["train_reward_mean"] for _ in range(12)]
    assert rewards[0] < 0.1
    assert max(rewards[-3:]) > 0.5, rewards


def test_ppo_step_trains_the_critic():
    trainer = make_trainer("ppo", grader="test_constant", steps=2, ppo={"epochs": 2})
    head = trainer.critic.head.weight.detach().clone()
    metrics = trainer.step().metrics
    assert "value_loss" in metrics and "explained_variance" in metrics
    assert not torch.equal(head, trainer.critic.head.weight)


def test_ppo_trains_a_bf16_policy_and_its_critic_through_masters():
    """rftkit.precision bf16 (the default for a bf16 checkpoint on a GPU) under PPO: the critic's
    body is bf16 and its fp32 head reads it; both optimizers step fp32 masters."""
    trainer = make_trainer("ppo", steps=2, dtype=torch.bfloat16)
    body = [p.detach().clone() for p in trainer.critic.body.parameters()]
    for _ in range(2):
        metrics = trainer.step().metrics
    assert isinstance(trainer.critic, ValueModel) and trainer.critic.head.weight.dtype == torch.float32
    assert trainer.optimizer.master_weights is not None and trainer.critic_optimizer.master_weights is not None
    assert metrics["value_loss"] == metrics["value_loss"] and metrics["grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(body, trainer.critic.body.parameters()))


def test_zero_variance_groups_give_zero_gradient():
    trainer = make_trainer(grader="test_constant", steps=1)
    before = params_of(trainer.model)
    metrics = trainer.step().metrics
    assert metrics["zero_variance_frac"] == 1.0
    assert metrics["grad_norm"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, params_of(trainer.model)))


def test_dynamic_sampling_drops_groups_without_signal():
    trainer = make_trainer("dapo", grader="test_constant", steps=1)
    metrics = trainer.step().metrics
    assert metrics["groups_used"] == 0 and "grad_norm" not in metrics


@pytest.mark.parametrize("lora", [False, True])
def test_kl_is_zero_at_step_zero(lora):
    trainer = make_trainer(lora=lora, kl={"coef": 0.1})
    metrics = trainer.step().metrics
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)
    later = [trainer.step().metrics["kl"] for _ in range(3)]
    assert max(later) > 0


def test_kl_is_measured_for_monitoring_under_lora_with_coefficient_zero():
    trainer = make_trainer(lora=True)  # kl.coef 0, kl.measure auto
    assert trainer.reference is None  # the base with the adapter off: no copy
    kls = [trainer.step().metrics["kl"] for _ in range(4)]
    assert kls[0] == pytest.approx(0.0, abs=1e-6)  # the adapter starts at zero: the policy is the base
    assert max(kls[1:]) > 0


def test_monitoring_kl_does_not_change_the_update():
    trained = {}
    for measure in ("auto", "off"):
        torch.manual_seed(0)  # the LoRA matrices are initialised from the global RNG
        trainer = make_trainer(lora=True, steps=3, kl={"measure": measure})
        logged = ["kl" in trainer.step().metrics for _ in range(3)]
        assert logged == [measure == "auto"] * 3
        trained[measure] = params_of(trainer.model)
    assert all(torch.equal(a, b) for a, b in zip(trained["auto"], trained["off"]))


def test_full_fine_tune_measures_kl_only_when_asked():
    auto = make_trainer(steps=2)
    assert auto.reference is None and "kl" not in auto.step().metrics  # no second copy unless asked
    always = make_trainer(steps=2, kl={"measure": "always"})
    assert always.reference is not None
    assert always.step().metrics["kl"] == pytest.approx(0.0, abs=1e-6)
    assert always.step().metrics["kl"] > 0


def test_lora_reference_is_the_base_with_the_adapter_off():
    trainer = make_trainer(lora=True, kl={"coef": 0.1})
    base, _ = build_tiny("tiny", seed=0)
    for _ in range(2):
        trainer.step()
    ids = torch.tensor([[257, 261, 49, 43, 50, 258, 262]])
    with torch.no_grad():
        adapted = trainer.model(input_ids=ids).logits
        with trainer.model.disable_adapter():
            disabled = trainer.model(input_ids=ids).logits
        original = base(input_ids=ids).logits
    assert torch.allclose(disabled, original, atol=1e-5)
    assert not torch.allclose(adapted, original, atol=1e-3)  # training did change the adapted model
    assert trainer.reference is None  # no second copy under LoRA


@pytest.mark.parametrize("algorithm", ["dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp"])
def test_every_algorithm_takes_a_finite_step(algorithm):
    # 32 tokens x 32 samples a step: a random byte model writes a '7' (reward) somewhere, so
    # some group carries a signal whatever the sampling stream
    trainer = make_trainer(algorithm, steps=2, lengths={"max_completion_tokens": 32})
    before = params_of(trainer.model)
    for _ in range(2):
        metrics = trainer.step().metrics
        # every step learns from some group, so it reports its loss, and its gradient is not zero
        # (on-policy the loss's value can be ~0 by construction: advantages centre on 0)
        assert metrics["groups_used"] > 0
        assert math.isfinite(metrics["loss"]), metrics
        assert math.isfinite(metrics["grad_norm"]) and metrics["grad_norm"] > 0.0, metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, params_of(trainer.model)))


def test_micro_batches_and_one_batch_give_the_same_update():
    """Gradient accumulation over token-budget micro-batches equals one full-batch step.

    Compared through plain SGD: Adam's first step is about lr * sign(gradient), which turns
    float noise on a near-zero gradient (different micro-batches share prompts differently)
    into a full step of either sign, hiding what is being tested."""
    whole = make_trainer(steps=1, update={"micro_batch_tokens": 100_000})
    split = make_trainer(steps=1, update={"micro_batch_tokens": 40})
    for trainer in (whole, split):
        trainer.optimizer = torch.optim.SGD([p for p in trainer.model.parameters() if p.requires_grad], lr=1.0)
        trainer.step()
    moved = False
    for a, b, start in zip(params_of(whole.model), params_of(split.model), params_of(make_trainer(steps=1).model)):
        assert torch.allclose(a, b, atol=1e-6)
        moved |= not torch.equal(a, start)
    assert moved


def test_several_mini_batches_use_sampling_logprobs_as_old():
    trainer = make_trainer(steps=1, update={"mini_batches": 2, "epochs": 2})
    assert not trainer.settings.update.on_policy
    metrics = trainer.step().metrics
    assert 0.0 <= metrics["clip_frac"] <= 1.0


@pytest.mark.parametrize("update", [{}, {"mini_batches": 2, "epochs": 2}])
def test_rows_without_gradient_are_skipped_without_changing_the_update(monkeypatch, update):
    """Rows whose advantages are all zero add nothing to the loss or its gradient, so the update
    leaves them out of the forward pass; the step must equal one that computes every row."""
    import rftkit.train.update as update_module

    skipping, computing = make_trainer(steps=1, update=update), make_trainer(steps=1, update=update)
    everything = lambda tensors, settings: torch.arange(tensors.advantages.shape[0])  # noqa: E731
    trained = {"skipping": 0, "computing": 0}  # rows computed, over every mini-batch and epoch
    original = update_module.rows_with_gradient
    for name, trainer, select in (("skipping", skipping, original), ("computing", computing, everything)):
        trainer.optimizer = torch.optim.SGD([p for p in trainer.model.parameters() if p.requires_grad], lr=1.0)

        def counted(*args, name=name, select=select):
            rows = select(*args)
            trained[name] += len(rows)
            return rows

        monkeypatch.setattr(update_module, "rows_with_gradient", counted)
        trainer.metrics = trainer.step().metrics
    assert 0 < trained["skipping"] < trained["computing"]  # some groups had no signal, and were skipped
    assert skipping.metrics["clip_frac"] == pytest.approx(computing.metrics["clip_frac"], abs=1e-9)
    assert skipping.metrics["loss"] == pytest.approx(computing.metrics["loss"], abs=1e-7)
    assert skipping.metrics["grad_norm"] == pytest.approx(computing.metrics["grad_norm"], rel=1e-5)
    for a, b in zip(params_of(skipping.model), params_of(computing.model)):
        assert torch.allclose(a, b, atol=1e-6)


def test_every_row_is_computed_when_kl_or_entropy_reads_it():
    from rftkit.train.update import StepTensors, rows_with_gradient

    advantages = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, -2.0]])
    tensors = StepTensors(advantages=advantages, old_logprobs=torch.zeros(4, 2))
    settings = make_trainer(steps=1).settings.update
    assert rows_with_gradient(tensors, settings).tolist() == [1, 3]
    with_kl = StepTensors(advantages=advantages, old_logprobs=torch.zeros(4, 2), reference_logprobs=torch.zeros(4, 2))
    assert rows_with_gradient(with_kl, settings).tolist() == [0, 1, 2, 3]
    entropy = make_trainer(steps=1, loss={"entropy_coef": 0.01}).settings.update
    assert rows_with_gradient(tensors, entropy).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("mode", ["token", "sequence"])
def test_a_corrected_step_on_an_exact_engine_matches_the_uncorrected_one(mode):
    """hf samples with the trainer's own log-probs, so every ratio is 1 (to float error), and
    forcing the correction on changes the update by no more than that error."""
    plain, corrected = make_trainer(steps=1), make_trainer(steps=1, rollout_correction={"mode": mode})
    assert plain.correction is None and corrected.correction == mode
    for trainer in (plain, corrected):
        trainer.optimizer = torch.optim.SGD([p for p in trainer.model.parameters() if p.requires_grad], lr=1.0)
        trainer.metrics = trainer.step().metrics
    assert corrected.metrics["is_ratio_mean"] == pytest.approx(1.0, abs=1e-4)
    assert corrected.metrics["is_capped_frac"] == 0.0
    assert "time_old_log_prob" in corrected.metrics and "is_ratio_mean" not in plain.metrics
    for a, b in zip(params_of(plain.model), params_of(corrected.model)):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_failing_engine_leaves_nothing_of_the_step_applied(tmp_path):
    """A rollout server that does not answer: the step raises, and the data order, the sampling
    RNG, the step count and the weights are as before it, so that a resumed run repeats it exactly."""
    from rftkit.config import EngineOptions
    from rftkit.rollout.engine import EngineContext, EngineUnavailable, build_engine

    trainer = make_trainer(steps=2)
    trainer.step()
    options = EngineOptions(base_url="http://127.0.0.1:9/v1", model="tiny", max_retries=0)
    trainer.engine = build_engine("openai", EngineContext(trainer.model, trainer.tokenizer, None, options, tmp_path))
    position, generator, weights = trainer.order.position, trainer.generator.get_state(), params_of(trainer.model)
    with pytest.raises(EngineUnavailable, match="did not answer after 1 tries"):
        trainer.step()
    assert trainer.step_count == 1 and trainer.order.position == position
    assert torch.equal(trainer.generator.get_state(), generator)
    assert all(torch.equal(a, b) for a, b in zip(weights, params_of(trainer.model)))
