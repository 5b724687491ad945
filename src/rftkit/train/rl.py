"""The RL step: gen -> reward -> old_log_prob -> ref -> adv -> update_actor (-> update_critic).

    trainer = RLTrainer(policy, tokenizer, grader, examples, resolved)   # resolved: ResolvedReinforcement
    outcome = trainer.step()      # StepOutcome(metrics, groups)

One step samples `batch_size` prompts through the rollout engine, `group_size` completions of
each, grades them in one batch, packs the kept groups into one Batch, turns rewards into
advantages and updates the policy. Each phase builds its values once and hands them on; nothing
is filled in place afterwards. `old_log_prob` runs only for an engine whose log-probs are not
the trainer's (then the importance correction of `algo/correction.py` applies); the reference
model is consulted when the KL coefficient is non-zero, or to log KL for monitoring
(`kl.measure`, see `measures_kl`); under LoRA it is the policy with its adapter switched off,
so no second copy is held.

Across data-parallel ranks (`parallel`, see `scale/parallel.py`) each rank samples and grades
its share of the step's prompts and then holds every rank's groups; the log-prob passes and
the update split the rows between the ranks. A step's sampling draws from a generator seeded
by the job's seed and the step (`sampling_generator`), with each prompt's draws tied to its
place in the batch (`types.Shard`), so N ranks sample the tokens one process would.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from rftkit.algo.advantages import ADVANTAGE_ESTIMATORS, gae, informative_groups
from rftkit.algo.correction import truncated_importance_weights
from rftkit.algo.kl import kl_divergence, mean_kl
from rftkit.config import KLOptions
from rftkit.data.chat import encode_prompt
from rftkit.graders.base import Grader
from rftkit.graders.batch import BatchGrades, grade_groups
from rftkit.resolved import ResolvedReinforcement
from rftkit.rollout.engine import Engine, EngineContext, EngineUnavailable, build_engine
from rftkit.rollout.groups import sample_groups
from rftkit.rollout.hf import evaluating
from rftkit.scale.fsdp import ShardedPolicy, sharded_precision
from rftkit.scale.parallel import SINGLE, Parallel
from rftkit.train.critic import ValueModel
from rftkit.train.logprobs import completion_logprobs, pack
from rftkit.train.metrics import step_metrics
from rftkit.train.optim import make_optimizer, refuse_lost_masters, schedule_factor, set_learning_rate
from rftkit.train.order import DataOrder
from rftkit.train.pipeline import AsyncRollouts
from rftkit.train.timing import PhaseTimer
from rftkit.train.update import StepTensors, update_actor, update_critic
from rftkit.types import Batch, Example, Group, Shard


@dataclass
class StepOutcome:
    metrics: dict
    groups: list[Group]


@dataclass(frozen=True)
class Draw:
    """What the rollout phases produced: the groups the update learns from (`kept`), every
    group sampled (`drawn`: with dynamic sampling, more than kept) and their grades."""

    kept: list[Group]
    drawn: list[Group]
    graded: list[BatchGrades]
    staleness: dict = field(default_factory=dict)  # asynchronous rollouts: staleness_mean, stale_dropped_frac


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    reference = copy.deepcopy(model).eval()
    return reference.requires_grad_(False)


def measures_kl(kl: KLOptions, is_lora: bool) -> bool:
    """Whether the `ref` phase runs: always for a KL penalty; for monitoring alone (coef 0) under
    LoRA, where the reference costs one forward pass and no memory (`kl.measure: auto`), and for
    a full fine-tune only when asked (`always`), since it then holds a frozen copy of the model."""
    if kl.coef > 0:
        return True
    return kl.measure == "always" or (kl.measure == "auto" and is_lora)


def needs_reference_copy(kl: KLOptions, is_lora: bool) -> bool:
    """A frozen copy of the starting policy is held only for a full fine-tune that measures KL."""
    return measures_kl(kl, is_lora) and not is_lora


def sampling_generator(seed: int, step: int, round_: int = 0) -> torch.Generator:
    """The generator a step's sampling round draws from: a function of the seed and the step
    alone, so that every rank (and a resumed run) starts the round from the same state."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 31 + round_)


def correction_level(mode: str, engine: Engine, max_staleness: int = 0) -> str | None:
    """The importance-correction level (token, sequence) for samples from `engine`, or None:
    `auto` corrects engines whose log-probs are not the trainer's own, and asynchronous
    rollouts (their samples come from an older policy)."""
    if mode == "auto":
        return None if engine.exact_logprobs and max_staleness == 0 else "token"
    return None if mode == "off" else mode


class RLTrainer:
    """Holds the policy, its engine, optimizer, data order and RNGs; `step()` runs one training step."""

    def __init__(self, model, tokenizer, grader: Grader, examples: list[Example], settings: ResolvedReinforcement,
                 *, engine: Engine | None = None, reference: torch.nn.Module | None = None,
                 critic: ValueModel | None = None, sampler: Callable = sample_groups, parallel: Parallel = SINGLE):
        """`engine` samples (default: `auto` over `model`); `sampler` draws groups through it
        (single completions, or multi-turn episodes: `rollout.episodes.EpisodeSampler`);
        `reference` (a frozen copy of the starting policy) is needed only for full fine-tuning
        that measures KL (`measures_kl`); under LoRA the adapter is switched off instead.
        `parallel`: this process's rank among data-parallel ranks (one process by default)."""
        self.model, self.tokenizer, self.grader, self.examples, self.settings = model, tokenizer, grader, examples, settings
        self.engine = engine or build_engine("auto", EngineContext(model, tokenizer))
        self.is_lora = hasattr(model, "disable_adapter")
        self.measures_kl = measures_kl(settings.kl, self.is_lora)
        needs_reference = needs_reference_copy(settings.kl, self.is_lora)
        self.reference = (reference or frozen_copy(model)) if needs_reference else None
        self.critic, self.sampler, self.parallel = critic, sampler, parallel
        # rftkit.fsdp: the update trains a sharded replica, and publishes its weights into `model`
        self.sharded = (ShardedPolicy(model, parallel, sharded_precision(settings.fsdp_mixed_precision, model,
                                                                         settings.precision))
                        if settings.fsdp and parallel.active else None)
        # a narrow (bf16) model is stepped through fp32 master weights (train/optim.py), unless bf16-pure; the
        # sharded replica has its own (fsdp.mixed_precision)
        masters = settings.precision != "bf16-pure" and self.sharded is None
        trained = self.sharded.parameters() if self.sharded is not None else model.parameters()
        self.optimizer = make_optimizer(trained, settings.learning_rate, settings.optimizer, masters)
        self.critic_optimizer = None
        if critic is not None:
            rate = settings.learning_rate * settings.ppo.critic_learning_rate_multiplier
            self.critic_optimizer = make_optimizer(critic.parameters(), rate, settings.optimizer,
                                                   settings.precision != "bf16-pure")
        self.order = DataOrder(len(examples), settings.seed)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.step_count = 0
        self._prompt_cache: dict[int, list[int]] = {}
        self.correction = correction_level(settings.rollout_correction.mode, self.engine, settings.max_staleness)
        self.rollouts = AsyncRollouts(self) if settings.max_staleness > 0 else None

    # ------------------------------------------------------------------ phases

    def prompt_ids(self, index: int) -> list[int]:
        if index not in self._prompt_cache:
            self._prompt_cache[index] = encode_prompt(self.tokenizer, self.examples[index],
                                                      **self.settings.chat_template_vars)
        return self._prompt_cache[index]

    def sync_engine(self, version: int | None = None) -> None:
        """Bring the engine to the policy's current weights (a no-op when it already has them),
        labelled `version` (default: the steps taken); an engine sampling the next batch in the
        background finishes it first."""
        if self.rollouts is not None:
            self.rollouts.settle()
        self.engine.update_weights(self.model, self.step_count if version is None else version)

    def sample(self, indices: list[int], round_: int = 0, *, engine: Engine | None = None,
               step: int | None = None) -> list[Group]:
        """This rank's share of the groups of `indices` (the whole batch's prompts), sampled by
        the trainer's engine at its current weights, or by `engine` (asynchronous rollouts) for
        the step that will train on them (`step`, which seeds the draws)."""
        if engine is None:
            self.sync_engine()
        share = self.parallel.share(len(indices))
        mine = indices[share.start:share.stop]
        if not mine:
            return []
        generator = sampling_generator(self.settings.seed, self.step_count if step is None else step, round_)
        return self.sampler(engine or self.engine, self.tokenizer, [self.examples[i] for i in mine],
                            [self.prompt_ids(i) for i in mine], self.settings.group_size,
                            self.settings.sampling, generator=generator, shard=Shard(share.start, len(indices)))

    def draw(self, timer: PhaseTimer) -> Draw:
        """Sample and grade groups; with dynamic sampling keep only informative ones, sampling
        more rounds (up to `sampling_rounds`) to refill the batch."""
        algorithm = self.settings.algorithm
        kept, drawn, graded, staleness = [], [], [], {}
        for round_ in range(algorithm.sampling_rounds if algorithm.dynamic_sampling else 1):
            size = self.settings.batch_size - len(kept)
            with timer("gen"):
                if self.rollouts is not None and round_ == 0:
                    groups = self.rollouts.take(self, size, timer)
                else:
                    groups = self.sample(self.order.next_batch(size), round_)
            with timer("reward"):
                grades = grade_groups(self.grader, groups)
            if self.parallel.active:  # every rank's groups and grades, in batch order, on every rank
                groups = self.parallel.gather(groups)
                graded.extend(self.parallel.gather([grades]))
            else:
                graded.append(grades)
            if self.rollouts is not None:
                groups, staleness = self.rollouts.fresh(groups, self.step_count, self.settings.max_staleness)
            drawn.extend(groups)
            if not algorithm.dynamic_sampling:
                return Draw(groups, drawn, graded, staleness)
            informative = informative_groups(torch.tensor([g.rewards for g in groups])).tolist()
            kept.extend(g for g, keep in zip(groups, informative) if keep)
            if len(kept) >= self.settings.batch_size:
                break
        return Draw(kept, drawn, graded, staleness)

    def rollout(self, timer: PhaseTimer) -> Draw:
        """`draw`, all or nothing: when the engine fails, the data order and sampling RNG are
        put back, so that the step runs again as if it had never started (with asynchronous
        rollouts: from before this step's prompts, drawn when their sampling started)."""
        order = (self.rollouts and self.rollouts.order_state()) or self.order.state_dict()
        generator = self.generator.get_state()
        try:
            return self.draw(timer)
        except EngineUnavailable:
            if self.rollouts is not None:
                self.rollouts.discard()
            self.order = DataOrder.from_state(order)
            self.generator.set_state(generator)
            raise

    def recomputed_logprobs(self, batch: Batch, reference: bool = False) -> torch.Tensor:
        """[N, C] log-probs of the batch's completions under the current policy (or the
        reference); across ranks each computes its share of the rows, and the shares are summed."""
        if not self.parallel.active:
            return self._logprobs(batch, reference)
        share = self.parallel.share(batch.loss_mask_NC.shape[0])
        logprobs_NC = torch.zeros(batch.loss_mask_NC.shape, device=batch.loss_mask_NC.device)
        if len(share):
            mine_nc = self._logprobs(batch.rows(torch.arange(share.start, share.stop)), reference)
            logprobs_NC[share.start:share.stop, : mine_nc.shape[1]] = mine_nc
        return self.parallel.sum_(logprobs_NC)

    def _logprobs(self, batch: Batch, reference: bool) -> torch.Tensor:
        if not reference:
            model, context = self.model, nullcontext()
        elif self.is_lora:
            model, context = self.model, self.model.disable_adapter()
        else:
            model, context = self.reference, nullcontext()
        with torch.no_grad(), context, evaluating(model):
            return completion_logprobs(model, batch, self.settings.update.temperature).logprobs_NC

    def advantages(self, rewards_N: torch.Tensor, batch: Batch, sampled_NC: torch.Tensor,
                   reference_NC: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(advantages [N, C], and for PPO the returns and old values [N, C])."""
        mask = batch.loss_mask_NC.float()
        kl = self.settings.kl
        kl_NC = None
        if kl.placement == "reward" and reference_NC is not None:
            kl_NC = kl.coef * kl_divergence(sampled_NC, reference_NC, kl.estimator) * mask
        if self.critic is not None:
            return self._gae(rewards_N, batch, mask, kl_NC)
        if kl_NC is not None:
            rewards_N = rewards_N - kl_NC.sum(-1)
        estimator = ADVANTAGE_ESTIMATORS[self.settings.algorithm.advantage]
        advantages_BG = estimator(rewards_N.reshape(-1, self.settings.group_size))
        return advantages_BG.reshape(-1, 1) * mask, None, None

    def _gae(self, rewards_N, batch: Batch, mask, kl_NC):
        with torch.no_grad():
            values = self.critic(batch)
        token_rewards = -kl_NC if kl_NC is not None else torch.zeros_like(mask)
        last = (mask.sum(-1).long() - 1).clamp(min=0)
        token_rewards[torch.arange(len(rewards_N), device=mask.device), last] += rewards_N
        advantages, returns = gae(token_rewards, values, mask, self.settings.ppo.gamma, self.settings.ppo.lam)
        mean = (advantages * mask).sum() / mask.sum()
        std = (((advantages - mean) * mask).square().sum() / mask.sum()).sqrt()
        return (advantages - mean) / (std + 1e-6) * mask, returns, values

    # ------------------------------------------------------------------ the step

    def learning_rate(self) -> float:
        factor = schedule_factor(self.step_count, self.settings.optimizer, self.settings.total_steps)
        return self.settings.learning_rate * factor

    def step(self) -> StepOutcome:
        timer = PhaseTimer()
        rate = self.learning_rate()
        set_learning_rate(self.optimizer, rate)
        if self.critic_optimizer is not None:
            set_learning_rate(self.critic_optimizer, rate * self.settings.ppo.critic_learning_rate_multiplier)
        with timer("step"):
            draw = self.rollout(timer)
            learned = self.learn(draw.kept, timer) if draw.kept else {}
        self.step_count += 1
        metrics = step_metrics(self.step_count, self.order.position / self.order.rows, draw, timer,
                               {**learned, "learning_rate": rate, **draw.staleness}, self.settings.pass_threshold)
        return StepOutcome(metrics, draw.drawn)

    def learn(self, groups: list[Group], timer: PhaseTimer) -> dict:
        """old_log_prob -> ref -> adv -> update_actor (-> update_critic) over the kept groups."""
        if self.rollouts is None or not self.rollouts.sampling_elsewhere:  # (not while it samples the next batch)
            self.engine.sleep()  # an engine on the trainer's GPU gives its memory back for the update
        device = next(self.model.parameters()).device
        batch, sampled_NC = pack([s.trajectory for g in groups for s in g.samples],
                                 [i for i, g in enumerate(groups) for _ in g.samples], self.tokenizer.pad_token_id,
                                 device)
        rewards_N = torch.tensor([r for g in groups for r in g.rewards], device=device)
        stats: dict = {}
        old_NC, weights_NC = sampled_NC, None
        if self.correction is not None:
            with timer("old_log_prob"):
                old_NC = self.recomputed_logprobs(batch)
                weights_NC, stats = truncated_importance_weights(
                    old_NC, sampled_NC, batch.loss_mask_NC, cap=self.settings.rollout_correction.cap,
                    level=self.correction)
        reference_NC = None
        if self.measures_kl:
            with timer("ref"):
                reference_NC = self.recomputed_logprobs(batch, reference=True)
            if self.settings.kl.coef == 0:  # monitoring only: logged here, kept out of the update's cost
                stats["kl"] = float(mean_kl(old_NC, reference_NC, batch.loss_mask_NC, self.settings.kl.estimator))
                reference_NC = None
        with timer("adv"):
            advantages_NC, returns_NC, values_NC = self.advantages(rewards_N, batch, old_NC, reference_NC)
        tensors = StepTensors(advantages_NC, old_NC, reference_NC, weights_NC, returns_NC, values_NC)
        actor = self.model if self.sharded is None else self.sharded.module
        actor.train()
        with timer("update_actor"):
            stats.update(update_actor(actor, self.optimizer, batch, tensors, self.settings.update, self.generator,
                                      self.parallel))
            if self.sharded is not None:
                self.sharded.publish()
        if self.critic is not None:
            with timer("update_critic"):
                stats.update(update_critic(self.critic, self.critic_optimizer, batch, tensors, self.settings.update,
                                           self.generator, self.parallel))
        return stats

    # ------------------------------------------------------------------ resumable state

    def state_dict(self) -> dict:
        return {
            "step": self.step_count,
            "optimizer": (self.optimizer.state_dict() if self.sharded is None
                          else self.sharded.optimizer_state(self.optimizer)),
            "master": self.sharded.master_state() if self.sharded is not None else None,
            "critic": self.critic.state_dict() if self.critic is not None else None,
            "critic_optimizer": self.critic_optimizer.state_dict() if self.critic_optimizer else None,
            "order": (self.rollouts and self.rollouts.order_state()) or self.order.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.random.get_rng_state(),
            "python_rng": random.getstate(),
        }

    def close(self) -> None:
        """Stop the asynchronous worker (if any) and release the engine."""
        if self.rollouts is not None:
            self.rollouts.close()
        self.engine.close()

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step"]
        if self.sharded is None:
            refuse_lost_masters(self.optimizer, state["optimizer"])
            self.optimizer.load_state_dict(state["optimizer"])
        else:
            self.sharded.load_optimizer_state(self.optimizer, state["optimizer"])
            self.sharded.load_master_state(state.get("master"))
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])  # before its optimizer, which widens it into masters
            refuse_lost_masters(self.critic_optimizer, state["critic_optimizer"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.order = DataOrder.from_state(state["order"])
        self.generator.set_state(state["generator"])
        torch.random.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
