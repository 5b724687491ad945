"""Ray underneath `rftkit train --ray`: reaching a cluster, placing actors, calling them with a timeout.

    cluster = RayCluster.connect(address, cpus=3.0)    # "": $RAY_ADDRESS, else a local instance
    placement = cluster.place(bundles=3, cpus_per_bundle=1.0, timeout_s=120)
    actors = Actors(RolloutWorker, (model_ref, ...), placement, bundles=[0, 1], calls=CallPolicy(...), role="rollout")
    results = actors.call("generate", {0: args0, 1: args1})   # {actor: result}, every call timed

Ray is an optional extra and is imported only here, when a job asks for it (`require_ray`).
What can go wrong, and what the user sees:

- no Ray installed: one line naming `pip install 'rftkit[ray]'`;
- an address nothing answers at: one line (the port is probed first; `ray.init` itself would wait
  for the cluster without end);
- a cluster without room for the actors: after `placement_timeout_s`, one line naming the CPUs (and
  GPUs) the placement group waits for and those the cluster has free;
- an actor that dies or does not answer within `call_timeout_s`: the call is retried on a
  restarted actor (`restarts` times), then `EngineUnavailable`, which stops the job with a
  checkpoint that `--resume` continues from.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from rftkit.errors import RftkitError
from rftkit.rollout.engine import EngineUnavailable
from rftkit.scale.parallel import Parallel

PROBE_TIMEOUT_S = 5.0  # how long an address may take to accept a TCP connection


def require_ray():
    """The `ray` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RftkitError("--ray needs Ray, which is not installed here",
                          fix="pip install 'rftkit[ray]'") from None
    return ray


def probe(address: str) -> None:
    """Raise a one-line RftkitError unless something accepts connections at `address`
    (host:port or ray://host:port); "auto" and "local" are left to Ray."""
    if address in ("auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise RftkitError(f"--ray {address}: not a Ray address",
                          fix="give HOST:PORT of the head node (as `ray start --head` prints it), ray://HOST:PORT, "
                              "or auto")
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as err:
        raise RftkitError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}",
                          fix="start it with `ray start --head` and pass the address it prints, or give --ray "
                              "without an address to start a local Ray instance") from None


@dataclass
class RayCluster:
    """A connection to Ray; `started` says whether this process started it (then `close` ends it)."""

    ray: Any
    started: bool

    @classmethod
    def connect(cls, address: str | None, cpus: float) -> "RayCluster":
        """Reach the cluster at `address` (None or "": $RAY_ADDRESS, else a new local instance with
        room for `cpus` CPUs of actors, even on a machine with fewer cores). A process already
        connected to Ray keeps that connection."""
        ray = require_ray()
        if ray.is_initialized():
            return cls(ray, started=False)
        address = address or os.environ.get("RAY_ADDRESS") or None
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # CPU actors: leave GPU variables be
        if address is None:
            cores = max(os.cpu_count() or 1, math.ceil(cpus))
            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            return cls(ray, started=True)
        probe(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RftkitError(f"cannot connect to the Ray cluster at {address}: {first_line}",
                              fix="start one with `ray start --head` (then --ray auto on that machine), or give "
                                  "--ray without an address to start a local Ray instance") from None
        return cls(ray, started=True)

    def place(self, bundles: int, cpus_per_bundle: float, timeout_s: float, gpus_per_bundle: int = 0) -> "Placement":
        """A placement group of `bundles` bundles of `cpus_per_bundle` CPUs (and `gpus_per_bundle`
        GPUs), ready within `timeout_s`."""
        from ray.util.placement_group import placement_group, remove_placement_group

        bundle = {"CPU": cpus_per_bundle, **({"GPU": gpus_per_bundle} if gpus_per_bundle else {})}
        group = placement_group([bundle] * bundles, strategy="PACK")
        try:
            self.ray.get(group.ready(), timeout=timeout_s)
        except self.ray.exceptions.GetTimeoutError:
            remove_placement_group(group)
            free, total = self.ray.available_resources(), self.ray.cluster_resources()
            wanted = " and ".join(f"{amount:g} {kind}" for kind, amount in bundle.items())
            has = "; ".join(f"{free.get(kind, 0.0):g} of {total.get(kind, 0.0):g} {kind}s free" for kind in bundle)
            raise RftkitError(
                f"Ray could not place {bundles} actors of {wanted} each ({bundles * cpus_per_bundle:g} CPUs"
                f"{f' and {bundles * gpus_per_bundle} GPUs' if gpus_per_bundle else ''} in one placement group) "
                f"within {timeout_s:g} s: the cluster has {has}",
                fix="lower rftkit.ray.rollout_actors, grader_actors or cpus_per_actor (or --nproc), add nodes to the "
                    "cluster, or raise rftkit.ray.placement_timeout_s") from None
        return Placement(self.ray, group, cpus_per_bundle, gpus_per_bundle)

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


@dataclass
class Placement:
    """A ready placement group; `options(i)` pins an actor to bundle `i` with the bundle's CPUs."""

    ray: Any
    group: Any
    cpus_per_bundle: float
    gpus_per_bundle: int = 0

    def options(self, bundle: int) -> dict:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        strategy = PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=bundle)
        return {"num_cpus": self.cpus_per_bundle, "num_gpus": self.gpus_per_bundle, "scheduling_strategy": strategy,
                "max_restarts": 0}

    @property
    def threads(self) -> int:
        """torch threads for an actor of one bundle."""
        return max(1, int(self.cpus_per_bundle))

    def close(self) -> None:
        from ray.util.placement_group import remove_placement_group

        if self.ray.is_initialized():
            remove_placement_group(self.group)


def shares(count: int, parts: int) -> list[range]:
    """`count` items in `parts` contiguous shares, in order, differing by at most one (as ranks share).

    >>> shares(5, 2)
    [range(0, 3), range(3, 5)]
    """
    return [Parallel(k, parts).share(count) for k in range(parts)]


@dataclass(frozen=True)
class CallPolicy:
    """How long one remote call may take, and how often it is retried on a restarted actor."""

    timeout_s: float
    restarts: int


class Actors:
    """Actors of one class, actor k in bundle `bundles[k]`. Every call has a timeout; an actor
    that died or timed out is replaced by a fresh one in the same bundle (then `on_start(actor)`,
    which returns an ObjectRef to wait for, brings it up to date) and the call is retried."""

    def __init__(self, cls: type, args: tuple, placement: Placement, bundles: list[int], calls: CallPolicy,
                 role: str, on_start: Callable[[Any], Any] | None = None):
        ray = placement.ray
        self.ray, self.placement, self.bundles, self.calls, self.role = ray, placement, bundles, calls, role
        self.remote_cls, self.args, self.on_start = ray.remote(cls), args, on_start
        self.handles = [self._start(k) for k in range(len(bundles))]

    def __len__(self) -> int:
        return len(self.handles)

    def _start(self, k: int):
        return self.remote_cls.options(**self.placement.options(self.bundles[k])).remote(*self.args)

    def restart(self, k: int) -> None:
        """Replace actor k (killing the old one if it still runs) and bring the new one up to date."""
        self.ray.kill(self.handles[k], no_restart=True)
        self.handles[k] = self._start(k)
        if self.on_start is not None:
            self.ray.get(self.on_start(self.handles[k]), timeout=self.calls.timeout_s)

    def call(self, method: str, args: dict[int, tuple]) -> dict[int, Any]:
        """`method(*args[k])` on actor k for every k in `args`, all at once; {k: result}."""
        started = time.monotonic()
        pending = {k: getattr(self.handles[k], method).remote(*a) for k, a in args.items()}
        return {k: self._result(k, ref, method, args[k], started) for k, ref in pending.items()}

    def _result(self, k: int, ref, method: str, args: tuple, started: float) -> Any:
        failures: list[str] = []
        while True:
            left = max(0.0, self.calls.timeout_s - (time.monotonic() - started))
            try:
                return self._get(ref, left)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError) as err:
                failures.append(self._describe(err))
            if len(failures) > self.calls.restarts:
                break
            try:
                self.restart(k)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError) as err:
                failures.append(f"its restart {self._describe(err)}")
                break
            ref, started = getattr(self.handles[k], method).remote(*args), time.monotonic()
        raise EngineUnavailable(f"{self.role} actor {k} {'; then '.join(failures)} ({method}, "
                                f"{self.calls.restarts} restart(s) allowed)",
                                fix="see the Ray logs of the actor (out of memory? killed?); raise "
                                    "rftkit.ray.call_timeout_s or rftkit.ray.restarts if it was only slow")

    def _get(self, ref, timeout_s: float) -> Any:
        """The call's result; an error the actor's code raised is re-raised as itself."""
        try:
            return self.ray.get(ref, timeout=timeout_s)
        except self.ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise

    def _describe(self, err: Exception) -> str:
        if isinstance(err, self.ray.exceptions.GetTimeoutError):
            return f"did not answer within {self.calls.timeout_s:g} s"
        return "died"

    def pids(self) -> list[int]:
        """Each actor's process id (its class defines `pid()`): for logs, and for tests that kill one."""
        return list(self.call("pid", {k: () for k in range(len(self))}).values())

    def close(self) -> None:
        for handle in self.handles:
            try:
                self.ray.kill(handle, no_restart=True)
            except Exception:  # already gone, or Ray shut down: nothing left to free
                pass
