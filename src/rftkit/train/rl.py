"""The RL step: gen -> reward -> ref -> adv -> update_actor, each phase named and timed.

    trainer = RLTrainer(policy, tokenizer, grader, examples, settings)
    outcome = trainer.step()      # StepOutcome(metrics, groups)

One step samples `batch_size` prompts, draws `group_size` completions of each in a single
generation call, grades them in one batch, turns rewards into advantages, and updates the
policy. The reference model is only consulted when the KL coefficient is non-zero; under
LoRA it is the policy with its adapter switched off, so no second copy is held.
"""

from __future__ import annotations

import copy
import random
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from rftkit.algo.advantages import ADVANTAGE_ESTIMATORS, gae, informative_groups
from rftkit.algo.kl import kl_divergence
from rftkit.config import (
    JobSpec,
    KLOptions,
    Optimizer,
    PPOOptions,
    ResolvedAlgorithm,
    ResolvedReinforcement,
    UpdateOptions,
    resolve_algorithm,
)
from rftkit.data.chat import encode_prompt
from rftkit.errors import RftkitError
from rftkit.graders.base import Grader
from rftkit.graders.batch import grade_batch
from rftkit.rollout.groups import sample_groups
from rftkit.rollout.hf import SamplingParams, stop_token_ids
from rftkit.train.critic import ValueModel
from rftkit.train.logprobs import completion_logprobs, pack
from rftkit.train.metrics import step_metrics
from rftkit.train.optim import make_optimizer, schedule_factor, set_learning_rate
from rftkit.train.order import DataOrder
from rftkit.train.timing import PhaseTimer
from rftkit.train.update import StepTensors, UpdatePlan, update
from rftkit.types import Batch, Example, Group


@dataclass(frozen=True)
class RLSettings:
    batch_size: int
    group_size: int
    total_steps: int
    learning_rate: float
    sampling: SamplingParams
    algorithm: ResolvedAlgorithm
    is_ppo: bool
    kl: KLOptions
    entropy_coef: float
    update: UpdateOptions
    ppo: PPOOptions
    optimizer: Optimizer
    sampling_rounds: int
    pass_threshold: float
    seed: int

    @classmethod
    def from_spec(cls, spec: JobSpec, resolved: ResolvedReinforcement) -> "RLSettings":
        opts = spec.rftkit
        if opts.sampling.temperature <= 0:
            raise RftkitError("rftkit.sampling.temperature: must be > 0 for reinforcement",
                              fix="RL learns from differences between samples; use 1.0")
        return cls(
            batch_size=resolved.batch_size,
            group_size=resolved.group_size,
            total_steps=resolved.total_steps,
            learning_rate=resolved.learning_rate,
            sampling=SamplingParams(opts.lengths.max_completion_tokens, opts.sampling.temperature,
                                    opts.sampling.top_p, opts.sampling.top_k),
            algorithm=resolve_algorithm(opts),
            is_ppo=opts.algorithm == "ppo",
            kl=opts.kl,
            entropy_coef=opts.loss.entropy_coef,
            update=opts.update,
            ppo=opts.ppo,
            optimizer=opts.optimizer,
            sampling_rounds=opts.dynamic_sampling.max_rounds,
            pass_threshold=opts.eval.pass_threshold,
            seed=spec.seed,
        )

    def update_plan(self) -> UpdatePlan:
        algo = self.algorithm
        return UpdatePlan(
            epochs=self.ppo.epochs if self.is_ppo else self.update.epochs,
            mini_batches=self.update.mini_batches,
            micro_batch_tokens=self.update.micro_batch_tokens,
            policy_loss=algo.policy_loss,
            aggregation=algo.aggregation,
            clip_low=algo.clip_low,
            clip_high=algo.clip_high,
            temperature=self.sampling.temperature,
            max_completion_tokens=self.sampling.max_new_tokens,
            kl_coef=self.kl.coef if self.kl.placement == "loss" else 0.0,
            kl_estimator=self.kl.estimator,
            entropy_coef=self.entropy_coef,
            max_grad_norm=self.optimizer.max_grad_norm,
            value_coef=self.ppo.value_coef,
            value_clip=self.ppo.value_clip,
        )


@dataclass
class StepOutcome:
    metrics: dict
    groups: list[Group]


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    reference = copy.deepcopy(model).eval()
    return reference.requires_grad_(False)


class RLTrainer:
    """Holds the policy, optimizer, data order and RNGs; `step()` runs one training step."""

    def __init__(self, model, tokenizer, grader: Grader, examples: list[Example], settings: RLSettings,
                 *, reference: torch.nn.Module | None = None, critic: ValueModel | None = None):
        """`reference` (a frozen copy of the starting policy) is needed only for full
        fine-tuning with a KL coefficient; under LoRA the adapter is switched off instead."""
        self.model, self.tokenizer, self.grader, self.examples, self.settings = model, tokenizer, grader, examples, settings
        self.is_lora = hasattr(model, "disable_adapter")
        if settings.kl.coef > 0 and not self.is_lora and reference is None:
            reference = frozen_copy(model)
        self.reference = reference if settings.kl.coef > 0 and not self.is_lora else None
        self.critic = critic
        self.plan = settings.update_plan()
        self.optimizer = make_optimizer(model.parameters(), settings.learning_rate, settings.optimizer)
        self.critic_optimizer = None
        if critic is not None:
            rate = settings.learning_rate * settings.ppo.critic_learning_rate_multiplier
            self.critic_optimizer = make_optimizer(critic.parameters(), rate, settings.optimizer)
        self.order = DataOrder(len(examples), settings.seed)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.step_count = 0
        self._prompt_cache: dict[int, list[int]] = {}

    # ------------------------------------------------------------------ phases

    def prompt_ids(self, index: int) -> list[int]:
        if index not in self._prompt_cache:
            self._prompt_cache[index] = encode_prompt(self.tokenizer, self.examples[index])
        return self._prompt_cache[index]

    def sample(self, indices: list[int]) -> list[Group]:
        examples = [self.examples[i] for i in indices]
        prompts = [self.prompt_ids(i) for i in indices]
        return sample_groups(self.model, self.tokenizer, examples, prompts, self.settings.group_size,
                             self.settings.sampling, stop_ids=self.stop_ids, generator=self.generator)

    def grade(self, groups: list[Group]):
        samples = [s for g in groups for s in g.samples]
        items = [g.example.item for g in groups for _ in g.samples]
        graded = grade_batch(self.grader, samples, items)
        size = self.settings.group_size
        for index, group in enumerate(groups):
            group.grades = graded.grades[index * size:(index + 1) * size]
        return graded

    def draw(self, timer: PhaseTimer) -> tuple[list[Group], list[Group], list]:
        """Sample and grade groups; with dynamic sampling keep only informative ones, sampling
        more rounds (up to `sampling_rounds`) to refill the batch. Returns (kept, all, grades)."""
        kept, drawn, graded = [], [], []
        for _ in range(self.settings.sampling_rounds):
            need = self.settings.batch_size - len(kept)
            with timer("gen"):
                groups = self.sample(self.order.next_batch(need))
            with timer("reward"):
                graded.append(self.grade(groups))
            drawn.extend(groups)
            if not self.settings.algorithm.dynamic_sampling:
                return groups, drawn, graded
            rewards = torch.tensor([g.rewards for g in groups])
            kept.extend(g for g, keep in zip(groups, informative_groups(rewards).tolist()) if keep)
            if len(kept) >= self.settings.batch_size:
                break
        return kept, drawn, graded

    def reference_logprobs(self, batch: Batch) -> torch.Tensor:
        context = self.model.disable_adapter() if self.is_lora else nullcontext()
        reference = self.model if self.is_lora else self.reference
        with torch.no_grad(), context:
            return completion_logprobs(reference, batch, self.settings.sampling.temperature).logprobs_NC

    def advantages(self, groups: list[Group], batch: Batch, tensors: StepTensors) -> None:
        """Fill tensors.advantages (and returns / old values for PPO) in place."""
        mask = batch.completion_mask_NC.float()
        rewards_N = torch.tensor([r for g in groups for r in g.rewards])
        kl_in_reward = self.settings.kl.placement == "reward" and tensors.reference_logprobs is not None
        kl_NC = None
        if kl_in_reward:
            kl_NC = self.settings.kl.coef * kl_divergence(tensors.sampling_logprobs, tensors.reference_logprobs,
                                                          self.settings.kl.estimator) * mask
        if self.settings.is_ppo:
            with torch.no_grad():
                values = self.critic(batch)
            token_rewards = -kl_NC if kl_NC is not None else torch.zeros_like(mask)
            last = (mask.sum(-1).long() - 1).clamp(min=0)
            token_rewards[torch.arange(len(rewards_N)), last] += rewards_N
            advantages, returns = gae(token_rewards, values, mask, self.settings.ppo.gamma, self.settings.ppo.lam)
            mean = (advantages * mask).sum() / mask.sum()
            std = (((advantages - mean) * mask).square().sum() / mask.sum()).sqrt()
            tensors.advantages = (advantages - mean) / (std + 1e-6) * mask
            tensors.returns, tensors.old_values = returns, values
            return
        if kl_NC is not None:
            rewards_N = rewards_N - kl_NC.sum(-1)
        estimator = ADVANTAGE_ESTIMATORS[self.settings.algorithm.advantage]
        advantages_BG = estimator(rewards_N.reshape(len(groups), -1))
        tensors.advantages = advantages_BG.reshape(-1, 1) * mask

    # ------------------------------------------------------------------ the step

    def learning_rate(self) -> float:
        factor = schedule_factor(self.step_count, self.settings.optimizer, self.settings.total_steps)
        return self.settings.learning_rate * factor

    def step(self) -> StepOutcome:
        timer = PhaseTimer()
        update_stats: dict = {}
        rate = self.learning_rate()
        set_learning_rate(self.optimizer, rate)
        if self.critic_optimizer is not None:
            set_learning_rate(self.critic_optimizer, rate * self.settings.ppo.critic_learning_rate_multiplier)
        with timer("step"):
            groups, drawn, graded = self.draw(timer)
            if groups:
                update_stats = self._learn(groups, timer)
        update_stats["learning_rate"] = rate
        self.step_count += 1
        metrics = step_metrics(self, drawn, groups, graded, update_stats, timer)
        return StepOutcome(metrics, drawn)

    def _learn(self, groups: list[Group], timer: PhaseTimer) -> dict:
        samples = [s for g in groups for s in g.samples]
        prompts = [g.prompt_ids for g in groups for _ in g.samples]
        device = next(self.model.parameters()).device
        batch = pack(prompts, [s.completion_ids for s in samples], self.tokenizer.pad_token_id, device)
        sampled = torch.zeros_like(batch.completion_mask_NC, dtype=torch.float32)
        for row, sample in enumerate(samples):
            sampled[row, : len(sample.logprobs)] = torch.tensor(sample.logprobs)
        tensors = StepTensors(advantages=torch.zeros_like(sampled), sampling_logprobs=sampled)
        if self.settings.kl.coef > 0:
            with timer("ref"):
                tensors.reference_logprobs = self.reference_logprobs(batch)
        with timer("adv"):
            self.advantages(groups, batch, tensors)
        self.model.train()
        with timer("update_actor"):
            return update(self.model, self.optimizer, batch, tensors, self.plan, self.generator,
                          self.critic, self.critic_optimizer)

    # ------------------------------------------------------------------ resumable state

    def state_dict(self) -> dict:
        return {
            "step": self.step_count,
            "optimizer": self.optimizer.state_dict(),
            "critic": self.critic.state_dict() if self.critic is not None else None,
            "critic_optimizer": self.critic_optimizer.state_dict() if self.critic_optimizer else None,
            "order": self.order.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.random.get_rng_state(),
            "python_rng": random.getstate(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step"]
        self.optimizer.load_state_dict(state["optimizer"])
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.order = DataOrder.from_state(state["order"])
        self.generator.set_state(state["generator"])
        torch.random.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
