"""`rftkit train JOB --ray --nproc N`: the N data-parallel trainer ranks as Ray actors.

    code = launch_on_ray(["train", job, "--out", out], nproc=2, options=spec.rftkit.ray, address="")

One placement group holds a bundle of `rftkit.ray.cpus_per_actor` CPUs for each rank (and one
GPU when the job trains on CUDA: `rank_gpus`), and each rank is an actor there. The actor runs the rank as a child process, `rftkit train` with the
environment torchrun would give it (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so a
rank runs the same code as under `--nproc` or `torchrun`: gloo on CPU, its own process group, its
own torch threads. MASTER_ADDR is the node of rank 0's actor; on GPUs, the ranks of a node all
see that node's ranks' GPUs and each trains on its own (`rank_devices`), as under torchrun. Each rank samples and grades its
own share of a step in its actor; rank 0 writes the run directory.

What the user sees is what `--nproc` shows (`scale/launch.py` supervises both): rank 0's output
on this terminal (the others' prefixed with their rank), SIGTERM or Ctrl-C pausing every rank
after its step, and a rank whose actor died or whose process failed ending the job within
`grace_s`, with rank 0's last checkpoint left for `--resume`. Every call to an actor other than
the run itself has `rftkit.ray.call_timeout_s`; a placement group the cluster cannot hold fails
after `placement_timeout_s`, naming the CPUs it waited for.

Ranks on other nodes read the job file, its data and model, and --out at the same paths as
this machine (a shared filesystem), as torchrun's ranks do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rftkit.config import RayOptions
from rftkit.errors import RftkitError
from rftkit.scale.launch import _die_with_parent, describe_exit, free_port, supervise
from rftkit.scale.ray_cluster import RayCluster

FORWARDED = ("RFTKIT_", "PYTHON", "HF_", "TRANSFORMERS_")  # the driver's settings a rank keeps


class TrainerRank:
    """A Ray actor that runs one rank of `rftkit train` as its child process."""

    def __init__(self):
        self.child: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def address(self) -> tuple[str, int, list[str]]:
        """(this node's IP, a free port on it, the GPUs Ray gave this actor): rank 0's address is
        where it listens for its peers."""
        import ray

        return ray.util.get_node_ip_address(), free_port(), [str(gpu) for gpu in ray.get_gpu_ids()]

    def run(self, args: list[str], environment: dict[str, str], cwd: str) -> int:
        """Run the rank to its end; its exit code. Its output is kept for `read`."""
        env = {**os.environ, **environment}
        directory = cwd if Path(cwd).is_dir() else None
        self.child = subprocess.Popen([sys.executable, "-m", "rftkit.cli", *args], env=env, cwd=directory,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                      preexec_fn=_die_with_parent)
        for line in self.child.stdout:
            with self.lock:
                self.lines.append(line.rstrip("\n"))
        return self.child.wait()

    def read(self) -> list[str]:
        """The lines the rank printed since the last read."""
        with self.lock:
            lines, self.lines = self.lines, []
        return lines

    def signal(self, signum: int) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)


class RankOnRay:
    """One rank's actor and its running `run` call, seen as a child process (Popen's `poll`,
    `send_signal`, `kill`, `wait`) so that `scale/launch.py` supervises it as it does `--nproc`."""

    DIED = -1000  # the exit code of a rank whose actor died (no signal has that number)

    def __init__(self, ray: Any, actor: Any, run: Any, timeout_s: float):
        self.ray, self.actor, self.run, self.timeout_s = ray, actor, run, timeout_s
        self.code: int | None = None
        self.died = False

    def poll(self) -> int | None:
        if self.code is None:
            done, _ = self.ray.wait([self.run], timeout=0)
            if done:
                self._finish(0)
        return self.code

    def wait(self) -> int:
        while self.poll() is None:
            self._finish(self.timeout_s)
        return self.code

    def _finish(self, timeout_s: float) -> None:
        try:
            self.code = int(self.ray.get(self.run, timeout=timeout_s))
        except self.ray.exceptions.GetTimeoutError:
            return
        except self.ray.exceptions.RayError:
            self.code, self.died = self.DIED, True

    def send_signal(self, signum: int) -> None:
        try:
            self.ray.get(self.actor.signal.remote(signum), timeout=self.timeout_s)
        except self.ray.exceptions.RayError:
            pass  # its end is seen by poll

    def kill(self) -> None:
        """Kill the actor, and with it the rank's process (it dies with its parent)."""
        self.ray.kill(self.actor, no_restart=True)

    def read(self) -> list[str]:
        if self.died:
            return []
        try:
            return self.ray.get(self.actor.read.remote(), timeout=self.timeout_s)
        except self.ray.exceptions.RayError:
            return []


def rank_variables(rank: int, nproc: int, local_rank: int, master: tuple[str, int], threads: int,
                   visible_gpus: str | None = None) -> dict[str, str]:
    """What rank `rank` of `nproc` adds to its actor's environment (the driver's own settings too);
    `visible_gpus`: its node's ranks' GPUs (CUDA_VISIBLE_DEVICES), of which it trains on the
    LOCAL_RANK-th."""
    kept = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED)}
    gpus = {} if visible_gpus is None else {"CUDA_VISIBLE_DEVICES": visible_gpus}
    return {**kept, "RANK": str(rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(nproc),
            "MASTER_ADDR": master[0], "MASTER_PORT": str(master[1]), "OMP_NUM_THREADS": str(threads), **gpus}


def rank_devices(actors: list[tuple[str, list[str]]]) -> list[tuple[int, str | None]]:
    """(LOCAL_RANK, CUDA_VISIBLE_DEVICES) for each rank from (its node, the GPUs Ray gave its
    actor). Without GPUs, a rank's index among its node's ranks and nothing to change; with them,
    every rank of a node sees the node's ranks' GPUs (so that NCCL connects them directly, as
    under torchrun), and LOCAL_RANK is its own GPU's place among them.

    >>> rank_devices([("a", ["3"]), ("b", ["0"]), ("a", ["1"])])
    [(1, '1,3'), (0, '0'), (0, '1,3')]
    >>> rank_devices([("a", []), ("a", [])])
    [(0, None), (1, None)]
    """
    if not any(gpus for _, gpus in actors):
        return [(local, None) for local in local_ranks([node for node, _ in actors])]
    on_node: dict[str, list[str]] = {}
    for node, gpus in actors:
        on_node.setdefault(node, []).extend(gpus)
    order = {node: sorted(set(gpus), key=lambda gpu: (len(gpu), gpu)) for node, gpus in on_node.items()}
    return [(order[node].index(gpus[0]), ",".join(order[node])) for node, gpus in actors]


def local_ranks(nodes: list[str]) -> list[int]:
    """Each rank's index among the ranks on its node, in rank order.

    >>> local_ranks(["10.0.0.1", "10.0.0.2", "10.0.0.1"])
    [0, 0, 1]
    """
    seen: dict[str, int] = {}
    ranks = []
    for node in nodes:
        ranks.append(seen.get(node, 0))
        seen[node] = ranks[-1] + 1
    return ranks


def launch_on_ray(args: list[str], nproc: int, options: RayOptions, address: str | None, *, device: str = "auto",
                  grace_s: float = 15.0, log: Callable[[str], None] = print) -> int:
    """Run `rftkit ARGS` as `nproc` ranks on Ray actors at `address` ("" or None: $RAY_ADDRESS, else a
    local instance for the job), each with a GPU of its own when the job trains on CUDA
    (`device`: rftkit.device); the job's exit code (0, 3 when paused, else a failure's)."""
    cluster = RayCluster.connect(address, nproc * options.cpus_per_actor)
    try:
        gpus = rank_gpus(device, nproc, cluster.ray.cluster_resources().get("GPU", 0.0))
        log(f"starting {nproc} data-parallel ranks on Ray, one actor of {options.cpus_per_actor:g} CPU"
            f"{' and 1 GPU' if gpus else ''} each")
        placement = cluster.place(nproc, options.cpus_per_actor, options.placement_timeout_s, gpus_per_bundle=gpus)
        try:
            return _run(cluster.ray, placement, args, nproc, options, grace_s, log)
        finally:
            placement.close()
    finally:
        cluster.close()


def rank_gpus(device: str, nproc: int, cluster_gpus: float) -> int:
    """GPUs each trainer rank's actor reserves: 1 on CUDA (rftkit.device cuda, or auto on a
    cluster with a GPU for every rank), else 0. A rank trains on one GPU, and NCCL puts no two
    ranks on one.

    >>> rank_gpus("auto", 2, 4.0), rank_gpus("auto", 2, 1.0), rank_gpus("cuda", 2, 0.0), rank_gpus("cpu", 2, 8.0)
    (1, 0, 1, 0)
    """
    if device.startswith("cuda"):
        return 1
    return 1 if device == "auto" and cluster_gpus >= nproc else 0


def _run(ray: Any, placement: Any, args: list[str], nproc: int, options: RayOptions, grace_s: float,
         log: Callable[[str], None]) -> int:
    remote = ray.remote(TrainerRank)
    actors = [remote.options(**placement.options(k), max_concurrency=4).remote() for k in range(nproc)]
    try:
        addresses = ray.get([a.address.remote() for a in actors], timeout=options.call_timeout_s)
    except (ray.exceptions.GetTimeoutError, ray.exceptions.RayError) as err:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        raise RftkitError(f"the trainer actors did not start within {options.call_timeout_s:g} s: "
                          f"{type(err).__name__}", fix="see the Ray logs; raise rftkit.ray.call_timeout_s") from None
    (master_node, port, _), cwd = addresses[0], os.getcwd()
    devices = rank_devices([(node, gpus) for node, _, gpus in addresses])
    ranks = [RankOnRay(ray, actor, actor.run.remote(
                 args, rank_variables(k, nproc, local, (master_node, port), placement.threads, visible), cwd),
                 options.call_timeout_s)
             for k, (actor, (local, visible)) in enumerate(zip(actors, devices))]

    def pump() -> None:
        for k, rank in enumerate(ranks):
            for line in rank.read():  # (a rank's error names the rank already: `rftkit.cli.rank_prefix`)
                log(line if k == 0 or line.startswith(f"error: rank {k}: ") else f"rank {k}: {line}")

    def describe(code: int) -> str:
        if code == RankOnRay.DIED:
            return "lost its Ray actor (killed, out of memory, or its node left the cluster)"
        return describe_exit(code)

    return supervise(ranks, grace_s, log, describe=describe, pump=pump)
