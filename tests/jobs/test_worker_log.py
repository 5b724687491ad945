"""The reason a failed job gives (`error.message`), read from its worker.log: the last
attempt's alone, and under `rftkit serve --nproc` the failed rank's own reason first."""

from rftkit.jobs.supervisor import ATTEMPT_MARK, last_error


def log(tmp_path, *lines):
    path = tmp_path / "worker.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_last_attempts_error_not_an_earlier_ones(tmp_path):
    path = log(tmp_path, f"{ATTEMPT_MARK} 1: train job.yaml", "error: the server did not answer",
               f"{ATTEMPT_MARK} 2: train job.yaml --resume", "rft 3/10", "Traceback (most recent call last):",
               "ValueError: boom")
    assert last_error(path) == "rft 3/10 | Traceback (most recent call last): | ValueError: boom"


def test_a_failed_ranks_own_reason_comes_with_the_launchers_line(tmp_path):
    launcher = ("error: rank 1 of 2 exited with code 2; the other ranks were stopped. The last checkpoint in --out "
                "stays: continue with --resume")
    path = log(tmp_path, f"{ATTEMPT_MARK} 1: train job.yaml --nproc 2", "error: rank 1: grader: no such table: t",
               "error: rank 0: a collective with the other ranks failed, most likely because one of them ended: x",
               launcher)
    assert last_error(path) == "rank 1: grader: no such table: t (rank 1 of 2 exited with code 2)"


def test_a_killed_rank_is_the_launchers_line(tmp_path):
    launcher = "error: rank 1 of 2 was killed by SIGKILL; the other ranks were stopped. Continue with --resume"
    path = log(tmp_path, "error: rank 0: a collective with the other ranks failed: reset by peer", launcher)
    assert last_error(path) == launcher.removeprefix("error: ")


def test_a_single_process_job_keeps_its_last_error(tmp_path):
    assert last_error(log(tmp_path, "data: 8 prompts", "error: baseline: pass@4 is 0")) == "baseline: pass@4 is 0"
    assert last_error(tmp_path / "missing.log") == "the worker left no log"
