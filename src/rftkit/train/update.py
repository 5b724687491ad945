"""The policy (and critic) update over one step's sampled batch.

Rows are split into mini-batches (one optimizer step each) and those into micro-batches
that fit a token budget (gradients accumulate). Loss denominators are the mini-batch's, so
the accumulated gradient equals the mini-batch's full gradient whatever the micro split.

Rows whose loss has no gradient (all-zero advantages, and no term that reads them otherwise)
are left out of the forward and backward passes: see `rows_with_gradient`. The clip fraction
still counts their tokens (never clipped at zero advantage); the entropy metric is measured on
the rows trained.

Fully on-policy (one epoch, one mini-batch) the sampling policy *is* the current policy:
`old` is the fresh log-prob detached, the ratio is exactly 1 and the clip a no-op. Otherwise
`old` is the sampling pass's own log-probs, recorded during generation, which equal a
recomputation to float precision — so no separate old-log-prob pass is ever run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rftkit.algo.kl import kl_divergence
from rftkit.algo.losses import POLICY_LOSSES, aggregate, batch_denominators, value_loss
from rftkit.train.critic import ValueModel
from rftkit.train.logprobs import completion_logprobs
from rftkit.types import Batch


@dataclass(frozen=True)
class UpdatePlan:
    epochs: int
    mini_batches: int
    micro_batch_tokens: int
    policy_loss: str
    aggregation: str
    clip_low: float
    clip_high: float
    temperature: float
    max_completion_tokens: int
    kl_coef: float = 0.0  # in the loss; 0 when KL is placed in the reward
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0
    value_coef: float = 0.5
    value_clip: float | None = 0.2

    @property
    def on_policy(self) -> bool:
        return self.epochs == 1 and self.mini_batches == 1


@dataclass
class StepTensors:
    """Per-row [N, C] tensors for the update; optional ones are None when unused."""

    advantages: torch.Tensor
    sampling_logprobs: torch.Tensor
    reference_logprobs: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    old_values: torch.Tensor | None = None

    def take(self, index: torch.Tensor, width: int) -> "StepTensors":
        pick = lambda t: None if t is None else t[index][:, :width]  # noqa: E731
        return StepTensors(*(pick(getattr(self, f)) for f in ("advantages", "sampling_logprobs",
                                                             "reference_logprobs", "returns", "old_values")))


@dataclass
class UpdateStats:
    totals: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: float, weight: float = 1.0) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + value * weight
        self.weights[name] = self.weights.get(name, 0.0) + weight

    def means(self) -> dict[str, float]:
        return {k: self.totals[k] / self.weights[k] for k in self.totals if self.weights[k]}


def micro_batches(batch: Batch, token_budget: int) -> list[torch.Tensor]:
    """Consecutive row groups whose padded size (rows x longest row) stays within the budget."""
    lengths = batch.attention_mask_NT.sum(-1).tolist()
    groups, current, longest = [], [], 0
    for row, length in enumerate(lengths):
        if current and (len(current) + 1) * max(longest, length) > token_budget:
            groups.append(torch.tensor(current))
            current, longest = [], 0
        current.append(row)
        longest = max(longest, length)
    groups.append(torch.tensor(current))
    return groups


def update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    tensors: StepTensors,
    plan: UpdatePlan,
    generator: torch.Generator,
    critic: ValueModel | None = None,
    critic_optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, float]:
    """Run every epoch and mini-batch of one step's update; return averaged statistics."""
    stats = UpdateStats()
    rows = batch.input_ids_NT.shape[0]
    for epoch in range(plan.epochs):
        order = torch.randperm(rows, generator=generator) if plan.mini_batches > 1 else torch.arange(rows)
        for index in order.chunk(plan.mini_batches):
            mini = batch.rows(index)
            mini_tensors = tensors.take(index, mini.completion_mask_NC.shape[1])
            _optimizer_step(model, optimizer, mini, mini_tensors, plan, stats, first_epoch=epoch == 0,
                            critic=critic, critic_optimizer=critic_optimizer)
    return stats.means()


def rows_with_gradient(tensors: StepTensors, plan: UpdatePlan, has_critic: bool) -> torch.Tensor:
    """[n] indices of the rows whose loss can have a gradient.

    Every policy loss is advantage x f(ratio) per token, so a row whose advantages are all
    zero (in GRPO, each row of a group whose samples all earned the same reward: often a
    third of a batch) adds exactly zero to the loss and to its gradient, while the loss's
    denominators come from the whole batch. Skipping such rows changes no update, only the
    work. Rows all count when another term reads them: a KL or entropy term, or a critic.
    """
    rows = tensors.advantages.shape[0]
    if tensors.reference_logprobs is not None or plan.entropy_coef > 0 or has_critic:
        return torch.arange(rows)
    return tensors.advantages.ne(0).any(-1).nonzero()[:, 0].cpu()


def _optimizer_step(model, optimizer, mini, tensors, plan, stats, *, first_epoch, critic, critic_optimizer):
    optimizer.zero_grad(set_to_none=True)
    if critic_optimizer is not None:
        critic_optimizer.zero_grad(set_to_none=True)
    denominators = batch_denominators(mini.completion_mask_NC)
    denominators["max_tokens"] = float(plan.max_completion_tokens)
    learning = rows_with_gradient(tensors, plan, critic is not None)
    # a skipped row's tokens have zero advantage, so none of them is clipped: count them so
    skipped_tokens = float(mini.completion_mask_NC.sum()) - float(mini.completion_mask_NC[learning].sum())
    if skipped_tokens:
        stats.add("clip_frac", 0.0, skipped_tokens)
    if len(learning):
        trained = mini.rows(learning)
        trained_tensors = tensors.take(learning, trained.completion_mask_NC.shape[1])
        policy_total, value_total = _accumulate(model, trained, trained_tensors, plan, denominators, stats,
                                                first_epoch, critic)
    else:  # a zero gradient still takes an optimizer step (momentum, weight decay), as it would unskipped
        policy_total, value_total = 0.0, 0.0
        for parameter in (p for p in model.parameters() if p.requires_grad):
            parameter.grad = torch.zeros_like(parameter)
    stats.add("loss", policy_total)
    if critic is not None:
        stats.add("value_loss", value_total)
    stats.add("grad_norm", float(torch.nn.utils.clip_grad_norm_(model.parameters(), plan.max_grad_norm)))
    optimizer.step()
    if critic is not None:
        torch.nn.utils.clip_grad_norm_(critic.parameters(), plan.max_grad_norm)
        critic_optimizer.step()


def _accumulate(model, mini, tensors, plan, denominators, stats, first_epoch, critic) -> tuple[float, float]:
    """Backward over the mini-batch's micro-batches; (policy loss, value loss), each the sum of
    the micro-batches' losses, which is the mini-batch's."""
    policy_total, value_total = 0.0, 0.0
    for index in micro_batches(mini, plan.micro_batch_tokens):
        micro = mini.rows(index)
        micro_tensors = tensors.take(index, micro.completion_mask_NC.shape[1])
        loss = _policy_loss(model, micro, micro_tensors, plan, denominators, stats, first_epoch)
        policy_total += float(loss.detach())
        if critic is not None:
            critic_loss = _value_loss(critic, micro, micro_tensors, plan, denominators, stats)
            value_total += float(critic_loss.detach())
            loss = loss + plan.value_coef * critic_loss
        loss.backward()
    return policy_total, value_total


def _policy_loss(model, micro: Batch, tensors: StepTensors, plan: UpdatePlan, denominators, stats, first_epoch):
    mask = micro.completion_mask_NC
    scores = completion_logprobs(model, micro, plan.temperature, entropy_grad=plan.entropy_coef > 0)
    logprobs = scores.logprobs_NC
    old = logprobs.detach() if plan.on_policy else tensors.sampling_logprobs
    loss_NC, loss_stats = POLICY_LOSSES[plan.policy_loss](
        logprobs, old, tensors.advantages, mask, clip_low=plan.clip_low, clip_high=plan.clip_high
    )
    tokens = float(mask.sum())
    if tensors.reference_logprobs is not None:
        kl_NC = kl_divergence(logprobs, tensors.reference_logprobs, plan.kl_estimator)
        if plan.kl_coef > 0:
            loss_NC = loss_NC + plan.kl_coef * kl_NC
        if first_epoch:
            stats.add("kl", float((kl_NC.detach() * mask).sum()) / max(tokens, 1), tokens)
    if plan.entropy_coef > 0:
        loss_NC = loss_NC - plan.entropy_coef * scores.entropy_NC
    loss = aggregate(loss_NC, mask, plan.aggregation, denominators)
    stats.add("clip_frac", loss_stats["clip_frac"], tokens)
    if first_epoch:
        stats.add("entropy", float((scores.entropy_NC.detach() * mask).sum()) / max(tokens, 1), tokens)
    return loss


def _value_loss(critic, micro: Batch, tensors: StepTensors, plan: UpdatePlan, denominators, stats):
    mask = micro.completion_mask_NC
    values = critic(micro)
    loss_NC, value_stats = value_loss(values, tensors.old_values, tensors.returns, mask, clip=plan.value_clip)
    loss = aggregate(loss_NC, mask, "token_mean", denominators)
    stats.add("explained_variance", value_stats["explained_variance"], float(mask.sum()))
    return loss
