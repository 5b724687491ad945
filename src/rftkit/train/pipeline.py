"""Asynchronous rollouts, one step off-policy (`rftkit.asynchronous.max_staleness: 1`).

While step t trains, a worker thread samples step t+1's groups with a copy of the weights step
t started from; step t+1 then trains on them as soon as step t's update is done:

    step t:   [take t's groups] [copy weights, start sampling t+1] [train on t ...........]
    worker:                                                        [sample t+1 .......]

So generation and training overlap (on CPU each gets half the cores: torch runs one op on the
thread that calls it), and every sample is at most one optimizer step old. Its policy version
is the copy's (`Completion.policy_version`); the trainer recomputes the old log-probs under the
current policy and weights each token by the truncated importance ratio (`algo/correction.py`),
as for an engine with numerics of its own. That is verl's one-step-off pipeline; AReaL and
prime-rl bound staleness the same way, by the version gap. The first step, and the first after
a resume, sample synchronously (nothing was started for them), so a resumed asynchronous run
is not sample-for-sample the uninterrupted one, unlike a synchronous run.

An engine that samples elsewhere (Ray rollout actors, an OpenAI-compatible server, vLLM) is
not copied: it samples the next batch itself, with the weights step t starts from pushed to it
before step t trains. Any other use of it by the trainer (a refill round of dynamic sampling,
validation, a weight push) first waits for the batch in flight (`settle`), so that weights never
change under a batch and the engine is never called from two threads at once.

Grading stays on the trainer's thread (graders need not be thread-safe). Data order: the next
step's prompts are drawn when its sampling starts; a checkpoint records the order from before
them, so a resumed run samples them again.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from rftkit.errors import RftkitError
from rftkit.rollout.engine import EngineContext, build_engine
from rftkit.train.timing import PhaseTimer
from rftkit.types import Group

if TYPE_CHECKING:
    from rftkit.train.rl import RLTrainer

IN_PROCESS_ENGINES = {"hf", "lean"}


@dataclass
class Pending:
    step: int  # the trainer's step_count when these groups are trained on
    order_before: dict  # the data order before their prompts were drawn
    future: Future


class AsyncRollouts:
    """The worker, the engine it samples with, and the one batch in flight."""

    def __init__(self, trainer: "RLTrainer"):
        from rftkit.train.rl import frozen_copy

        self.threads = torch.get_num_threads()
        self.shared = trainer.engine.name not in IN_PROCESS_ENGINES
        if self.shared and not trainer.engine.holds_own_weights:
            raise RftkitError(f"rftkit.asynchronous.max_staleness: the {trainer.engine.name} engine does not say it "
                              "samples from weights of its own (Engine.holds_own_weights), so it cannot sample "
                              "while the policy trains", fix="use engine auto, hf, lean, openai or vllm, or "
                              "max_staleness 0")
        if self.shared:  # it samples elsewhere: the trainer's own engine, used by one thread at a time
            self.copy, self.engine = None, trainer.engine
        else:  # a copy of the policy and an engine over it; the two threads share the cores out
            self.copy = frozen_copy(trainer.model)
            self.engine = build_engine(trainer.engine.name, EngineContext(self.copy, trainer.tokenizer))
            torch.set_num_threads(max(1, self.threads // 2))  # torch runs an op on the thread that calls it
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="rftkit-rollout")
        self.pending: Pending | None = None

    def take(self, trainer: "RLTrainer", size: int, timer: PhaseTimer) -> list[Group]:
        """This rank's groups for the step about to train: those sampled in the background
        (the wait is timed as `gen`, the worker's own sampling time as `gen_async`), or, on the
        first step and after a resume, sampled now. Then starts sampling the next step's."""
        if self.pending is not None and self.pending.step == trainer.step_count:
            groups, seconds = self.pending.future.result()
            timer.seconds["gen_async"] = seconds
        else:
            groups = trainer.sample(trainer.order.next_batch(size))
        self.pending = None
        if trainer.step_count + 1 < trainer.settings.total_steps:
            self.start(trainer, size)
        return groups

    def start(self, trainer: "RLTrainer", size: int) -> None:
        if self.copy is not None:
            self.copy.load_state_dict(trainer.model.state_dict())
        self.engine.update_weights(self.copy or trainer.model, trainer.step_count)
        order_before = trainer.order.state_dict()
        indices = trainer.order.next_batch(size)
        step = trainer.step_count + 1
        self.pending = Pending(step, order_before, self.worker.submit(self._sample, trainer, indices, step))

    def _sample(self, trainer: "RLTrainer", indices: list[int], step: int) -> tuple[list[Group], float]:
        started = time.perf_counter()
        groups = trainer.sample(indices, 0, engine=self.engine, step=step)
        return groups, time.perf_counter() - started

    @staticmethod
    def fresh(groups: list[Group], version: int, max_staleness: int) -> tuple[list[Group], dict]:
        """The groups whose every sample is at most `max_staleness` optimizer steps older than
        the policy at `version`, and the step's staleness metrics."""
        ages = [[version - s.trajectory.policy_version for s in g.samples] for g in groups]
        kept = [g for g, age in zip(groups, ages) if max(age, default=0) <= max_staleness]
        every = [a for age in ages for a in age]
        return kept, {"staleness_mean": sum(every) / max(len(every), 1),
                      "stale_dropped_frac": 1 - len(kept) / max(len(groups), 1)}

    @property
    def sampling_elsewhere(self) -> bool:
        """Whether a shared engine has a batch in flight (so it must not sleep, or get weights)."""
        return self.shared and self.pending is not None

    def settle(self) -> None:
        """Wait until a shared engine has finished the batch in flight (its result is kept for
        the step that trains on it); with an engine of its own the worker never needs waiting for."""
        if self.sampling_elsewhere:
            wait([self.pending.future])

    def discard(self) -> None:
        """Drop the batch in flight (after a failed step: its prompts are drawn again)."""
        self.settle()
        self.pending = None

    def order_state(self) -> dict | None:
        """The data order a checkpoint records while a batch is in flight (None: none is)."""
        return self.pending.order_before if self.pending is not None else None

    def close(self) -> None:
        if self.pending is not None:
            self.pending.future.cancel()
            try:
                self.pending.future.result()
            except Exception:  # noqa: BLE001 - a batch no step will train on; its error does not matter
                pass
        self.pending = None
        self.worker.shutdown(wait=True)
        if not self.shared:  # the trainer closes its own engine
            self.engine.close()
        torch.set_num_threads(self.threads)
