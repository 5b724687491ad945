"""Where a job's rollout and grading run: in the trainer's process, or on Ray actors.

    roles = job_roles(ray_address, spec.rftkit)    # None: LocalRoles; else RayRoles (`--ray`)
    grader = roles.grader(rollout, context)         # what the job grades with
    engine = roles.engine(spec.rftkit, policy, tokenizer, model_path=..., work_dir=...)
    ...
    roles.close()

Both give the job an ordinary `Grader` and `Engine`, so the training loop, the baseline check
and validation run unchanged on either. Under Ray, one placement group holds every actor:
bundles 0..N-1 are the rollout actors (`rftkit.ray.rollout_actors`), the next M the grader
actors (`rftkit.ray.grader_actors`), each with `rftkit.ray.cpus_per_actor` CPUs.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

from rftkit.config import RayOptions, RftkitOptions
from rftkit.graders import Grader, GraderContext
from rftkit.rollout.engine import Engine, job_engine
from rftkit.scale.ray_cluster import CallPolicy, RayCluster


class LocalRoles:
    """Rollout and grading in this process (the default)."""

    def grader(self, rollout, context: GraderContext) -> Grader:
        return rollout.grader(context)

    def engine(self, options: RftkitOptions, policy: Any, tokenizer: Any, *, model_path: str | None,
               work_dir: Path | None) -> Engine:
        return job_engine(options, policy, tokenizer, model_path=model_path, work_dir=work_dir)

    def describe(self) -> str:
        return ""

    def close(self) -> None:
        """Nothing to release: the engine and grader close themselves."""


class RayRoles(LocalRoles):
    """Rollout actors and grader actors in one Ray placement group (`rftkit train --ray`)."""

    def __init__(self, address: str | None, options: RayOptions):
        self.options = options
        actors = options.rollout_actors + options.grader_actors
        self.cluster = RayCluster.connect(address, actors * options.cpus_per_actor)
        try:
            self.placement = self.cluster.place(actors, options.cpus_per_actor, options.placement_timeout_s)
        except BaseException:
            self.cluster.close()
            raise
        self.calls = CallPolicy(options.call_timeout_s, options.restarts)

    def grader(self, rollout, context: GraderContext) -> Grader:
        from rftkit.scale.ray_grader import RayGrader

        local = rollout.grader(context)
        # the actors need the grader, not the sampler (an episode sampler's environment class may
        # come from a file they cannot import)
        make_grader = functools.partial(dataclasses.replace(rollout, sampler=None).grader, context)
        first = self.options.rollout_actors
        return RayGrader(local, make_grader, self.placement, list(range(first, first + self.options.grader_actors)),
                         self.calls)

    def engine(self, options: RftkitOptions, policy: Any, tokenizer: Any, *, model_path: str | None,
               work_dir: Path | None) -> Engine:
        from rftkit.scale.ray_rollout import RayEngine

        return RayEngine(self.placement, list(range(self.options.rollout_actors)), model=policy, tokenizer=tokenizer,
                         engine_name=options.engine, calls=self.calls)

    def describe(self) -> str:
        o = self.options
        return (f" on Ray: {o.rollout_actors} rollout and {o.grader_actors} grader actors of "
                f"{o.cpus_per_actor:g} CPU each")

    def close(self) -> None:
        self.placement.close()
        self.cluster.close()


def job_roles(ray_address: str | None, options: RftkitOptions) -> LocalRoles:
    """`ray_address` None: this process; otherwise Ray at that address ("": $RAY_ADDRESS, else a
    local instance started for the job)."""
    if ray_address is None:
        return LocalRoles()
    from rftkit.scale.ray_rollout import check_engine

    check_engine(options.engine)  # before a cluster is reached or started
    return RayRoles(ray_address, options.ray)
