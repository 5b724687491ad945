"""The policy update (`update_actor`) and PPO's critic update (`update_critic`) over one step's batch.

Rows are split into mini-batches (one optimizer step each) and those into micro-batches
that fit a token budget (gradients accumulate). Loss denominators are the mini-batch's, so
the accumulated gradient equals the mini-batch's full gradient whatever the micro split.
Losses are computed on the tokens of the batch's loss mask only (those the policy sampled).

Rows whose loss has no gradient (all-zero advantages, and no term that reads them otherwise)
are left out of the forward and backward passes: see `rows_with_gradient`. The clip fraction
still counts their tokens (never clipped at zero advantage); the entropy metric is measured on
the rows trained.

Across data-parallel ranks (`scale/parallel.py`) every rank holds the whole batch; the rows
that learn are split between them, each rank divides by the whole mini-batch's denominators,
and the ranks' gradients (and losses) are summed before clipping: the same optimizer step as
one process, to float rounding. Statistics are merged from every rank's totals and weights.

Fully on-policy (one epoch, one mini-batch) the sampling policy *is* the current policy:
`old` is the fresh log-prob detached, the ratio is exactly 1 and the clip a no-op. Otherwise
`old` is `StepTensors.old_logprobs`: for an in-process engine the sampling pass's own
log-probs, which equal a recomputation to float precision (so no old-log-prob pass is run);
for an engine with numerics of its own, the trainer's recomputation. Importance weights, when
the step has them (`algo/correction.py`), scale each token's policy loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from rftkit.algo.kl import kl_divergence
from rftkit.algo.losses import POLICY_LOSSES, aggregate, batch_denominators, value_loss
from rftkit.resolved import UpdateSettings
from rftkit.scale.fsdp import is_sharded
from rftkit.scale.parallel import SINGLE, Parallel
from rftkit.train.critic import ValueModel
from rftkit.train.logprobs import completion_logprobs, whole_forward_logprobs
from rftkit.train.optim import trained_parameters
from rftkit.types import Batch


@dataclass(frozen=True)
class StepTensors:
    """Per-row [N, C] values the update reads, each built once by the phase that owns it;
    optional ones are None when unused."""

    advantages: torch.Tensor
    old_logprobs: torch.Tensor
    reference_logprobs: torch.Tensor | None = None
    importance_weights: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    old_values: torch.Tensor | None = None

    def take(self, index: torch.Tensor, width: int) -> "StepTensors":
        pick = lambda t: None if t is None else t[index][:, :width]  # noqa: E731
        return StepTensors(*(pick(getattr(self, f.name)) for f in fields(self)))


@dataclass
class UpdateStats:
    totals: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: float, weight: float = 1.0) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + value * weight
        self.weights[name] = self.weights.get(name, 0.0) + weight

    def means(self, parallel: Parallel = SINGLE) -> dict[str, float]:
        """Weighted means; across ranks, of every rank's totals and weights together (a value
        every rank adds alike, such as the gradient norm, keeps its mean)."""
        totals, weights = dict(self.totals), dict(self.weights)
        if parallel.active:
            totals, weights = {}, {}
            for their_totals, their_weights in parallel.gather([(self.totals, self.weights)]):
                for name, value in their_totals.items():
                    totals[name] = totals.get(name, 0.0) + value
                    weights[name] = weights.get(name, 0.0) + their_weights[name]
        return {k: totals[k] / weights[k] for k in sorted(totals) if weights[k]}


def _sum_gradients(parameters, parallel: Parallel, total: float) -> float:
    """Gradients summed over the ranks (a parameter without one on this rank counts as zeros),
    and the loss likewise. In one process a step where no row learned gets zero gradients: an
    optimizer step still applies momentum and weight decay, as it would unskipped."""
    trainable = [p for p in parameters if p.requires_grad]
    if parallel.active:
        (total,) = parallel.all_reduce_gradients(trainable, [total])
    else:
        _zeros_for_missing(trainable)
    return total


def _zeros_for_missing(parameters: list) -> None:
    """No rank had a row to train: zero gradients, so that the optimizer step applies momentum
    and weight decay as one process's does (`_sum_gradients`)."""
    if all(p.grad is None for p in parameters if p.requires_grad):
        for parameter in parameters:
            if parameter.requires_grad:
                parameter.grad = torch.zeros_like(parameter)


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


def _mini_batches(batch: Batch, tensors: StepTensors, settings: UpdateSettings, generator: torch.Generator):
    """(epoch, mini-batch, its tensors) for every optimizer step of the update."""
    rows = batch.input_ids_NT.shape[0]
    for epoch in range(settings.epochs):
        order = torch.randperm(rows, generator=generator) if settings.mini_batches > 1 else torch.arange(rows)
        for index in order.chunk(settings.mini_batches):
            mini = batch.rows(index)
            yield epoch, mini, tensors.take(index, mini.loss_mask_NC.shape[1])


def update_actor(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, tensors: StepTensors,
                 settings: UpdateSettings, generator: torch.Generator, parallel: Parallel = SINGLE) -> dict[str, float]:
    """Every epoch and mini-batch of one step's policy update; averaged statistics."""
    return ActorUpdate(model, optimizer, settings, parallel).run(batch, tensors, generator)


def update_critic(critic: ValueModel, optimizer: torch.optim.Optimizer, batch: Batch, tensors: StepTensors,
                  settings: UpdateSettings, generator: torch.Generator, parallel: Parallel = SINGLE) -> dict[str, float]:
    """PPO's value update over the same epochs and mini-batches: value_loss, explained_variance."""
    return CriticUpdate(critic, optimizer, settings, parallel).run(batch, tensors, generator)


def rows_with_gradient(tensors: StepTensors, settings: UpdateSettings) -> torch.Tensor:
    """[n] indices of the rows whose policy loss can have a gradient.

    Every policy loss is advantage x f(ratio) per token (times an importance weight), so a row
    whose advantages are all zero (in GRPO, each row of a group whose samples all earned the
    same reward: often a third of a batch) adds exactly zero to the loss and to its gradient,
    while the loss's denominators come from the whole batch. Skipping such rows changes no
    update, only the work. Rows all count when another term reads them: a KL or entropy term.
    """
    rows = tensors.advantages.shape[0]
    if tensors.reference_logprobs is not None or settings.entropy_coef > 0:
        return torch.arange(rows)
    return tensors.advantages.ne(0).any(-1).nonzero()[:, 0].cpu()


class ActorUpdate:
    """One step's policy update. Per optimizer step it holds the mini-batch's loss denominators
    and whether this is the first epoch (when KL and entropy are measured)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, settings: UpdateSettings,
                 parallel: Parallel = SINGLE):
        self.model, self.optimizer, self.settings, self.parallel = model, optimizer, settings, parallel
        self.stats, self.denominators, self.first_epoch = UpdateStats(), {}, True
        self.sharded = is_sharded(model)  # FSDP: the model's own forward, every rank in step
        self.scores = whole_forward_logprobs if self.sharded else completion_logprobs

    def run(self, batch: Batch, tensors: StepTensors, generator: torch.Generator) -> dict[str, float]:
        for epoch, mini, mini_tensors in _mini_batches(batch, tensors, self.settings, generator):
            self.first_epoch = epoch == 0
            self._optimizer_step(mini, mini_tensors)
        return self.stats.means(self.parallel)

    def _optimizer_step(self, mini: Batch, tensors: StepTensors) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.denominators = batch_denominators(mini.loss_mask_NC)
        self.denominators["max_tokens"] = float(self.settings.max_completion_tokens)
        learning = rows_with_gradient(tensors, self.settings)
        # a skipped row's tokens have zero advantage, so none of them is clipped: count them so (once)
        skipped_tokens = float(mini.loss_mask_NC.sum()) - float(mini.loss_mask_NC[learning].sum())
        if skipped_tokens and self.parallel.is_main:
            self.stats.add("clip_frac", 0.0, skipped_tokens)
        share = self.parallel.share(len(learning))
        mine = learning[share.start:share.stop]
        total, passes = 0.0, 0
        if len(mine):
            trained = mini.rows(mine)
            total, passes = self._accumulate(trained, tensors.take(mine, trained.loss_mask_NC.shape[1]))
        stepped = trained_parameters(self.optimizer)  # the model's weights, or their fp32 masters
        if self.sharded:  # FSDP reduce-scattered the gradients in backward
            self._keep_in_step(mini, passes)
            total = float(self.parallel.sum_(torch.tensor([total], dtype=torch.float64, device=self.parallel.device)))
            _zeros_for_missing(stepped)
        else:
            total = _sum_gradients(stepped, self.parallel, total)
        self.stats.add("loss", total)
        norm = torch.nn.utils.clip_grad_norm_(stepped, self.settings.max_grad_norm)
        self.stats.add("grad_norm", float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm))
        self.optimizer.step()

    def _accumulate(self, mini: Batch, tensors: StepTensors) -> tuple[float, int]:
        """Backward over the mini-batch's micro-batches; (the policy loss, the sum of the
        micro-batches' losses, which is the mini-batch's; how many passes it took)."""
        total, pieces = 0.0, micro_batches(mini, self.settings.micro_batch_tokens)
        for index in pieces:
            micro = mini.rows(index)
            loss = self._loss(micro, tensors.take(index, micro.loss_mask_NC.shape[1]))
            total += float(loss.detach())
            loss.backward()
        return total, len(pieces)

    def _keep_in_step(self, mini: Batch, passes: int) -> None:
        """Under FSDP every rank runs as many forward/backward passes as the busiest (each pass
        gathers and scatters with the others): the missing ones are zero-loss passes over one row."""
        for _ in range(self.parallel.most(passes) - passes):
            one = mini.rows(torch.tensor([0]))
            scores = self.scores(self.model, one, self.settings.temperature)
            (scores.logprobs_NC.sum() * 0.0).backward()

    def _loss(self, micro: Batch, tensors: StepTensors) -> torch.Tensor:
        settings, stats, mask = self.settings, self.stats, micro.loss_mask_NC
        algorithm = settings.algorithm
        scores = self.scores(self.model, micro, settings.temperature, entropy_grad=settings.entropy_coef > 0)
        logprobs = scores.logprobs_NC
        old = logprobs.detach() if settings.on_policy else tensors.old_logprobs
        loss_NC, loss_stats = POLICY_LOSSES[algorithm.policy_loss](
            logprobs, old, tensors.advantages, mask, clip_low=algorithm.clip_low, clip_high=algorithm.clip_high
        )
        if tensors.importance_weights is not None:
            loss_NC = loss_NC * tensors.importance_weights
        tokens = float(mask.sum())
        if tensors.reference_logprobs is not None:
            kl_NC = kl_divergence(logprobs, tensors.reference_logprobs, settings.kl_estimator)
            if settings.kl_coef > 0:
                loss_NC = loss_NC + settings.kl_coef * kl_NC
            if self.first_epoch:
                stats.add("kl", float((kl_NC.detach() * mask).sum()) / max(tokens, 1), tokens)
        if settings.entropy_coef > 0:
            loss_NC = loss_NC - settings.entropy_coef * scores.entropy_NC
        loss = aggregate(loss_NC, mask, algorithm.aggregation, self.denominators)
        stats.add("clip_frac", loss_stats["clip_frac"], tokens)
        if self.first_epoch:
            stats.add("entropy", float((scores.entropy_NC.detach() * mask).sum()) / max(tokens, 1), tokens)
        return loss


class CriticUpdate:
    """One step's value update, over the actor's epochs and mini-batch sizes (its own order)."""

    def __init__(self, critic: ValueModel, optimizer: torch.optim.Optimizer, settings: UpdateSettings,
                 parallel: Parallel = SINGLE):
        self.critic, self.optimizer, self.settings, self.parallel = critic, optimizer, settings, parallel
        self.stats = UpdateStats()

    def run(self, batch: Batch, tensors: StepTensors, generator: torch.Generator) -> dict[str, float]:
        for _, mini, mini_tensors in _mini_batches(batch, tensors, self.settings, generator):
            self.optimizer.zero_grad(set_to_none=True)
            denominators = batch_denominators(mini.loss_mask_NC)
            share = self.parallel.share(mini.loss_mask_NC.shape[0])
            total = self._accumulate(mini, mini_tensors, torch.arange(share.start, share.stop), denominators)
            stepped = trained_parameters(self.optimizer)
            self.stats.add("value_loss", _sum_gradients(stepped, self.parallel, total))
            torch.nn.utils.clip_grad_norm_(stepped, self.settings.max_grad_norm)
            self.optimizer.step()
        return self.stats.means(self.parallel)

    def _accumulate(self, mini: Batch, tensors: StepTensors, rows: torch.Tensor, denominators: dict) -> float:
        """Backward over this rank's `rows` of the mini-batch; their value loss."""
        if not len(rows):
            return 0.0
        mine = mini.rows(rows)
        mine_tensors = tensors.take(rows, mine.loss_mask_NC.shape[1])
        total = 0.0
        for index in micro_batches(mine, self.settings.micro_batch_tokens):
            micro = mine.rows(index)
            loss = self._loss(micro, mine_tensors.take(index, micro.loss_mask_NC.shape[1]), denominators)
            total += float(loss.detach())
            (self.settings.value_coef * loss).backward()
        return total

    def _loss(self, micro: Batch, tensors: StepTensors, denominators: dict) -> torch.Tensor:
        mask = micro.loss_mask_NC
        loss_NC, value_stats = value_loss(self.critic(micro), tensors.old_values, tensors.returns, mask,
                                          clip=self.settings.value_clip)
        self.stats.add("explained_variance", value_stats["explained_variance"], float(mask.sum()))
        return aggregate(loss_NC, mask, "token_mean", denominators)
