"""`rftkit train JOB --nproc N`: N data-parallel ranks of the same command on this machine.

The launcher starts N copies of `rftkit train` with the environment torchrun would give them
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so a rank runs the same code under
`--nproc`, under `torchrun` and under Ray; each rank gets an equal share of the cores
(OMP_NUM_THREADS). It stays in front:

- SIGTERM or Ctrl-C reaches every rank: they agree to pause after the step under way, rank 0
  writes the checkpoint, and all exit (exit code 3, as a single process does);
- a rank that dies (killed, out of memory, an error) fails the job: its peers notice at their
  next collective and exit; those that do not within `grace_s` are killed, so nothing hangs.
  Rank 0's last checkpoint stays, and `--resume` continues from it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

PAUSED_EXIT = 3  # `rftkit train` exits 3 when the job paused with a checkpoint
LOST_PEER_EXIT = 4  # a rank that stopped because another went away (`rftkit.cli.lost_peer`): not the cause
RANKS_STOPPED = "the other ranks were stopped"  # in the line a failed job ends with (`rftkit serve` reads it)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_environment(rank: int, nproc: int, port: int, cores: int) -> dict[str, str]:
    """The environment of rank `rank` of `nproc` on this machine."""
    return {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": str(max(1, cores // nproc))}


def _die_with_parent() -> None:
    """In a rank, before it starts: the kernel kills it when the launcher dies (Linux), so no
    orphaned rank trains on; elsewhere the launcher's own cleanup has to do."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def describe_exit(code: int) -> str:
    """How a rank ended, from its exit code (negative: the signal that killed it).

    >>> describe_exit(-9)
    'was killed by SIGKILL'
    """
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def launch(args: list[str], nproc: int, *, grace_s: float = 15.0, log: Callable[[str], None] = print) -> int:
    """Run `rftkit ARGS` as `nproc` ranks; the job's exit code (0, 3 when paused, else a failure's)."""
    port, cores = free_port(), os.cpu_count() or 1
    ranks = [subprocess.Popen([sys.executable, "-m", "rftkit.cli", *args], env=rank_environment(r, nproc, port, cores),
                              start_new_session=True, preexec_fn=_die_with_parent)
             for r in range(nproc)]
    return supervise(ranks, grace_s, log)


def supervise(ranks: list, grace_s: float, log: Callable[[str], None], *, describe: Callable[[int], str] = describe_exit,
              pump: Callable[[], None] = lambda: None) -> int:
    """Watch running ranks until every one has ended, forwarding SIGTERM and Ctrl-C to them; the
    job's exit code. A rank is anything with Popen's `poll`, `send_signal`, `kill` and `wait`
    (a child process, or a Ray actor's, `scale/ray_ranks.py`); `pump()` runs between polls.
    Once a pause was forwarded, a rank that SIGTERM ended (it was past its training loop, or not
    yet in it) counts as paused, as one process ended so counts for `rftkit serve`."""
    paused: list[int] = []

    def forward(signum, frame) -> None:
        paused.append(signum)
        for rank in ranks:
            if rank.poll() is None:
                rank.send_signal(signal.SIGTERM)  # each rank pauses after its step

    def code_of(rank) -> int | None:
        code = rank.poll()
        return PAUSED_EXIT if code == -signal.SIGTERM and paused else code

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _watch(ranks, grace_s, log, describe, pump, code_of)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for rank in ranks:
            if rank.poll() is None:
                rank.kill()
                rank.wait()


def _watch(ranks: list, grace_s: float, log: Callable[[str], None], describe: Callable[[int], str],
           pump: Callable[[], None], code_of: Callable[[object], int | None]) -> int:
    """Wait for every rank; once one fails, give the others `grace_s` to notice, then kill them.
    The failure reported is the first seen, but a rank that only lost a peer (LOST_PEER_EXIT)
    gives way to one that failed for a reason of its own; ranks killed here are no reason."""
    failures: dict[int, int] = {}  # rank: exit code, in the order seen
    killed: set[int] = set()
    deadline = None
    while any(rank.poll() is None for rank in ranks):
        pump()
        for index, rank in enumerate(ranks):
            code = code_of(rank)
            if code not in (None, 0, PAUSED_EXIT) and index not in killed:
                failures.setdefault(index, code)
                deadline = deadline or time.monotonic() + grace_s
        if deadline is not None and time.monotonic() > deadline:
            for index, rank in enumerate(ranks):
                if rank.poll() is None:
                    killed.add(index)
                    rank.kill()
        time.sleep(0.1)
    pump()
    for rank in ranks:
        rank.wait()
    codes = [code_of(rank) for rank in ranks]
    for index, code in enumerate(codes):
        if code not in (0, PAUSED_EXIT) and index not in killed:
            failures.setdefault(index, code)
    if failures:
        index, code = next(((i, c) for i, c in failures.items() if c != LOST_PEER_EXIT), next(iter(failures.items())))
        log(f"error: rank {index} of {len(ranks)} {describe(code)}; {RANKS_STOPPED}. "
            "The last checkpoint in --out stays: continue with --resume")
        return code if code > 0 else 1
    return PAUSED_EXIT if PAUSED_EXIT in codes else 0
