"""Grading on Ray actors: `RayGrader` splits each batch of samples across grader actors, each
holding the job's grader built from the same spec, and returns the grades in order.

    grader = RayGrader(local, make_grader, placement, bundles=[2], calls=calls)
    grades = grader.grade_many(samples, items)      # what local.grade_many(samples, items) gives

`local` is the same grader built in the trainer's process: it checked the spec before any actor
started, and answers `name`, `spec` and `problems()` without a round trip. `make_grader` is a
picklable zero-argument callable the actors call to build their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rftkit.graders.base import Grader
from rftkit.scale.ray_cluster import Actors, CallPolicy, Placement, shares
from rftkit.types import Grade, Sample


class GraderWorker:
    """Inside one grader actor: the job's grader."""

    def __init__(self, make_grader: Callable[[], Grader]):
        self.grader = make_grader()

    def grade_many(self, samples: list[Sample], items: list[dict]) -> list[Grade]:
        return self.grader.grade_many(samples, items)

    def pid(self) -> int:
        return os.getpid()


class RayGrader(Grader):
    """`grade_many` on grader actors, contiguous shares in order."""

    def __init__(self, local: Grader, make_grader: Callable[[], Grader], placement: Placement, bundles: list[int],
                 calls: CallPolicy):
        super().__init__(local.spec, local.context)
        self.local = local
        self.actors = Actors(GraderWorker, (make_grader,), placement, bundles, calls, role="grader")

    @property
    def name(self) -> str:
        return self.local.name

    def grade_many(self, samples: list[Sample], items: list[dict]) -> list[Grade]:
        args = {k: (samples[s.start:s.stop], items[s.start:s.stop])
                for k, s in enumerate(shares(len(samples), len(self.actors))) if len(s)}
        results = self.actors.call("grade_many", args)
        return [grade for k in sorted(results) for grade in results[k]]

    def grade(self, sample: Sample, item: dict) -> Grade:
        return self.grade_many([sample], [item])[0]

    def problems(self) -> list[str]:
        return self.local.problems()

    def close(self) -> None:
        self.actors.close()
        self.local.close()
