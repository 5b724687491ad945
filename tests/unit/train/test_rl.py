"""The RL step on tiny models: rewards rise, parameters move, and the invariants hold."""

from typing import Literal

import pytest
import torch

from rftkit.config import LoraOptions, parse_job, resolve_reinforcement
from rftkit.graders import build_grader
from rftkit.graders.base import REGISTRY, Grader, GraderSpec, register
from rftkit.models.load import wrap_lora
from rftkit.models.tiny import build_tiny
from rftkit.train.critic import ValueModel
from rftkit.train.rl import RLSettings, RLTrainer
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


def make_trainer(algorithm="grpo", grader="test_sevens", steps=12, lora=False, **rftkit):
    spec = parse_job({
        "model": "unused", "training_file": "unused", "seed": 0,
        "method": {"type": "reinforcement", "reinforcement": {"grader": {"type": grader}, "hyperparameters": {"batch_size": 4}}},
        "rftkit": {"algorithm": algorithm, "group_size": 8, "learning_rate": 1e-2, "max_steps": steps,
                   "lengths": {"max_completion_tokens": 8}, **rftkit},
    })
    model, tokenizer = build_tiny("tiny", seed=0)
    critic = ValueModel.from_policy(model) if algorithm == "ppo" else None
    if lora:
        model = wrap_lora(model, LoraOptions(enabled=True, r=8, alpha=16))
    settings = RLSettings.from_spec(spec, resolve_reinforcement(spec, len(EXAMPLES)))
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
    trainer = make_trainer(algorithm, steps=2)
    before = params_of(trainer.model)
    for _ in range(2):
        metrics = trainer.step().metrics
    assert torch.isfinite(torch.tensor(metrics.get("loss", 0.0)))
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
    assert not trainer.plan.on_policy
    metrics = trainer.step().metrics
    assert 0.0 <= metrics["clip_frac"] <= 1.0


@pytest.mark.parametrize("update", [{}, {"mini_batches": 2, "epochs": 2}])
def test_rows_without_gradient_are_skipped_without_changing_the_update(monkeypatch, update):
    """Rows whose advantages are all zero add nothing to the loss or its gradient, so the update
    leaves them out of the forward pass; the step must equal one that computes every row."""
    import rftkit.train.update as update_module

    skipping, computing = make_trainer(steps=1, update=update), make_trainer(steps=1, update=update)
    everything = lambda tensors, plan, has_critic: torch.arange(tensors.advantages.shape[0])  # noqa: E731
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
    tensors = StepTensors(advantages=advantages, sampling_logprobs=torch.zeros(4, 2))
    plan = make_trainer(steps=1).plan
    assert rows_with_gradient(tensors, plan, has_critic=False).tolist() == [1, 3]
    assert rows_with_gradient(tensors, plan, has_critic=True).tolist() == [0, 1, 2, 3]
    with_kl = StepTensors(advantages=advantages, sampling_logprobs=torch.zeros(4, 2), reference_logprobs=torch.zeros(4, 2))
    assert rows_with_gradient(with_kl, plan, has_critic=False).tolist() == [0, 1, 2, 3]
    entropy = make_trainer(steps=1, loss={"entropy_coef": 0.01}).plan
    assert rows_with_gradient(tensors, entropy, has_critic=False).tolist() == [0, 1, 2, 3]
