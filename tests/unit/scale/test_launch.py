"""The launcher's verdict on ranks that end (`scale/launch.supervise`), over real processes: which
rank it blames, and the job's exit code."""

import os
import signal
import subprocess
import sys
import threading

from rftkit.scale.launch import LOST_PEER_EXIT, PAUSED_EXIT, supervise


def rank(code: int, after_s: float = 0.0, *, hang: bool = False) -> subprocess.Popen:
    body = "import time; time.sleep(600)" if hang else f"import sys, time; time.sleep({after_s}); sys.exit({code})"
    return subprocess.Popen([sys.executable, "-c", body])


def verdict(ranks, grace_s=5.0):
    lines = []
    return supervise(ranks, grace_s, lines.append), lines


def test_a_rank_that_failed_on_its_own_is_blamed_not_one_that_lost_it():
    code, lines = verdict([rank(LOST_PEER_EXIT), rank(2, after_s=0.5)])  # rank 0 notices first
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("error: rank 1 of 2 exited with code 2; the other ranks were stopped.")


def test_ranks_the_launcher_kills_after_the_grace_are_not_the_reason():
    code, lines = verdict([rank(LOST_PEER_EXIT), rank(0, hang=True)], grace_s=0.5)
    assert code == LOST_PEER_EXIT and lines[0].startswith("error: rank 0 of 2 exited with code 4;")


def test_paused_and_finished_ranks_end_the_job_without_blame():
    assert verdict([rank(PAUSED_EXIT), rank(PAUSED_EXIT)]) == (PAUSED_EXIT, [])
    assert verdict([rank(0), rank(0)]) == (0, [])


def test_a_pause_that_ends_ranks_outside_their_training_loop_is_a_pause():
    """SIGTERM to the launcher reaches ranks with no handler of their own (past their loop, or
    before it): SIGTERM ends them, and the job counts as paused, not failed."""
    ranks = [rank(0, hang=True), rank(0, hang=True)]
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    assert verdict(ranks) == (PAUSED_EXIT, [])


def test_a_rank_that_sigterm_ends_without_a_pause_is_a_failure():
    ranks = [rank(0, hang=True), rank(0, hang=True)]
    threading.Timer(0.5, ranks[1].send_signal, (signal.SIGTERM,)).start()
    code, lines = verdict(ranks, grace_s=0.5)
    assert code == 1 and lines[0].startswith("error: rank 1 of 2 was killed by SIGTERM;")
