"""The python grader in the sandbox: results and error kinds, and every containment the issue
asks for — each attack followed by a correct grade from the same warm pool."""

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from rftkit.errors import RftkitError
from rftkit.graders import GraderContext, build_grader
from rftkit.graders.sandbox import pool as pool_module
from rftkit.types import Sample

ATTACKS = r'''
import os, socket, time

def grade(sample, item):
    attack = item.get("attack")
    if attack == "loop":
        while True:
            pass
    if attack == "sleep":
        time.sleep(3600)
    if attack == "allocate":
        return float(len(bytearray(10 * 1024 ** 3)))
    if attack == "socket":
        try:
            socket.create_connection(("127.0.0.1", item["port"]), timeout=2).close()
            return 1.0
        except OSError:
            return 0.0
    if attack == "fork_bomb":
        while True:
            try:
                os.fork()
            except OSError:
                pass
    if attack == "environ":
        seen = open("/proc/self/environ", "rb").read() + open("/proc/1/environ", "rb").read()
        return float(len(os.environ) + len(seen))
    if attack == "write":
        with open("/tmp/left-behind.txt", "w") as f:
            f.write("x")
        os.makedirs("/dev/shm/dir", exist_ok=True)
        os.chmod("/dev/shm/dir", 0o500)  # and make it hard to clean
        try:
            os.chmod("/tmp", 0o500)  # /tmp itself belongs to root, like a real one
        except PermissionError:
            return 1.0
        return 0.5
    if attack == "look":
        return float(os.path.exists("/tmp/left-behind.txt") + os.path.exists("/dev/shm/dir"))
    if attack == "escape":
        # Only /usr, the interpreter and the virtual environment are bound in, read-only.
        host = ("/work/main/pyproject.toml", "/work/main/src", "/etc/passwd", "/etc/shadow", "/home", "/var",
                "/root/.bash_history", "/sys/fs/cgroup")
        found = [p for p in host if os.path.exists(p)]
        try:
            open("/usr/rftkit-test", "w")
            found.append("writable /usr")
        except OSError:
            pass
        return float(len(found))
    return len(sample["output_text"]) + item["bonus"]
'''


@pytest.fixture(scope="module")
def attacks(sandbox_limits):
    grader = build_grader({"type": "python", "name": "attacks", "source": ATTACKS},
                          GraderContext(sandbox=sandbox_limits))
    yield grader
    grader.close()


def normal(grader, text="abc", bonus=0.5):
    """The check after each attack: the same pool still grades a sample correctly."""
    grade = grader.grade(Sample(text), {"bonus": bonus})
    assert grade.reward == len(text) + bonus and not any(grade.metadata["errors"].values())


def attack(grader, name, **item):
    return grader.grade(Sample("x"), {"attack": name, **item})


def test_returns_the_graders_value_in_order(attacks):
    grades = attacks.grade_many([Sample("a" * n) for n in range(50)], [{"bonus": 0.25}] * 50)
    assert [g.reward for g in grades] == [n + 0.25 for n in range(50)]


def test_infinite_loop_is_killed_at_the_limit(attacks):
    started = time.monotonic()
    grade = attack(attacks, "loop")
    assert grade.reward == 0.0 and grade.metadata["errors"]["unresponsive_reward_error"] is True
    # The CPU limit (1 s) comes first, unless the machine is so busy that 1 s of CPU takes
    # longer than the wall-clock limit (2 s).
    details = grade.metadata["errors"]["unresponsive_reward_error_details"]
    assert "CPU limit of 1 s" in details or "wall-clock limit of 2 s" in details
    assert time.monotonic() - started < 30
    normal(attacks)


def test_sleeping_forever_is_stopped_at_the_wall_limit(attacks):
    grade = attack(attacks, "sleep")
    assert "wall-clock limit of 2 s" in grade.metadata["errors"]["unresponsive_reward_error_details"]
    normal(attacks)


def test_a_10_gb_allocation_fails(attacks):
    grade = attack(attacks, "allocate")
    assert grade.reward == 0.0 and "MemoryError" in grade.metadata["errors"]["python_grader_runtime_error_details"]
    normal(attacks)


def test_loopback_is_unreachable_even_with_a_server_listening(attacks):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # reachable from outside the sandbox
        grade = attack(attacks, "socket", port=port)
        assert grade.reward == 0.0 and not any(grade.metadata["errors"].values())
    finally:
        listener.close()
    normal(attacks)


def test_fork_bomb_is_contained(attacks):
    grade = attack(attacks, "fork_bomb")
    assert grade.reward == 0.0 and grade.metadata["errors"]["unresponsive_reward_error"] is True
    for worker in attacks.pool.workers:
        if worker is not None:  # only the keeper and the server are left in the worker's cgroups
            assert len(worker.cgroups.pids()) == 2
    normal(attacks)


def test_environment_holds_none_of_the_parents_variables(attacks, monkeypatch):
    monkeypatch.setenv("RFTKIT_TEST_SECRET", "s3cret")
    assert attack(attacks, "environ").reward == 0.0  # no variables, and empty environ files
    normal(attacks)


def test_files_written_are_gone_afterwards_and_host_files_are_out_of_sight(attacks):
    assert attack(attacks, "write").reward == 1.0
    assert not Path("/tmp/left-behind.txt").exists()
    for _ in range(4):  # every worker: whichever one served the write
        assert attack(attacks, "look").reward == 0.0
    assert attack(attacks, "escape").reward == 0.0
    normal(attacks)


def test_errors_are_named_as_openai_names_them(sandbox_context):
    source = """
def grade(sample, item):
    kind = item["kind"]
    if kind == "raise":
        raise ValueError("bad sample")
    if kind == "exit":
        raise SystemExit(3)
    return {"nan": float("nan"), "inf": float("inf"), "str": "0.5", "none": None}[kind]
"""
    with build_grader({"type": "python", "name": "p", "source": source}, sandbox_context) as grader:
        grades = grader.grade_many([Sample("x")] * 6, [{"kind": k} for k in ("raise", "exit", "nan", "inf", "str", "none")])
    details = [g.metadata["errors"].get("python_grader_runtime_error_details", "") for g in grades]
    assert all(g.reward == 0.0 and g.metadata["errors"]["python_grader_runtime_error"] for g in grades)
    assert "ValueError: bad sample" in details[0] and "SystemExit" in details[1]
    assert "nan" in details[2] and "inf" in details[3] and "str" in details[4] and "NoneType" in details[5]


def test_source_that_fails_to_load_fails_each_grade(sandbox_context):
    with build_grader({"type": "python", "source": "import no_such_module\ndef grade(s, i): return 1"},
                      sandbox_context) as grader:
        grade = grader.grade(Sample("x"), {})
    assert "No module named 'no_such_module'" in grade.metadata["errors"]["python_grader_runtime_error_details"]


def test_a_dead_worker_is_replaced(sandbox_context):
    source = "def grade(sample, item):\n    return 1.0"
    with build_grader({"type": "python", "source": source}, sandbox_context) as grader:
        assert grader.grade(Sample("x"), {}).reward == 1.0
        keeper = next(w for w in grader.pool.workers if w is not None)
        os.kill(keeper.process.pid, signal.SIGKILL)
        keeper.process.wait()
        assert [g.reward for g in grader.grade_many([Sample("x")] * 8, [{}] * 8)] == [1.0] * 8


def test_close_leaves_no_worker_processes_or_cgroups(sandbox_context):
    with build_grader({"type": "python", "source": "def grade(s, i):\n    return 2"}, sandbox_context) as grader:
        grader.grade_many([Sample("x")] * 4, [{}] * 4)
        workers = [w for w in grader.pool.workers if w is not None]
        dirs = [d for w in workers for d in w.cgroups.dirs]
        pids = [p for w in workers for p in w.cgroups.pids()]
        assert workers and dirs and pids
    assert not any(d.exists() for d in dirs)
    for pid in pids:  # gone (or the number reused by some unrelated process)
        try:
            assert b"sandbox/worker.py" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            pass


def test_without_root_the_grader_fails_closed(monkeypatch):
    monkeypatch.setattr(pool_module.os, "geteuid", lambda: 1000)
    with build_grader({"type": "python", "source": "def grade(s, i):\n    return 1"}) as grader:
        with pytest.raises(RftkitError, match="not running as root"):
            grader.grade(Sample("x"), {})


def test_an_integer_from_grade_comes_back_as_that_float(attacks):
    grade = attacks.grade(Sample("ab"), {"bonus": 1})  # len("ab") + 1: grade() returns the int 3
    assert type(grade.reward) is float and grade.reward == 3.0
    assert not any(grade.metadata["errors"].values())
    big = attacks.grade(Sample("ab"), {"bonus": 2 ** 60})  # exact in a float: no rounding on the way
    assert big.reward == float(2 + 2 ** 60)


def test_source_whose_top_level_never_ends_fails_each_grade(sandbox_context):
    with build_grader({"type": "python", "source": "while True:\n    pass\n"}, sandbox_context) as grader:
        grade = grader.grade(Sample("x"), {})
    assert "loading took longer than 2 s" in grade.metadata["errors"]["python_grader_runtime_error_details"]


@pytest.mark.slow
def test_source_that_blocks_the_load_alarm_stops_with_a_clear_error(sandbox_context):
    source = "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\nwhile True:\n    pass\n"
    with build_grader({"type": "python", "source": source}, sandbox_context) as grader:
        with pytest.raises(RftkitError, match="did not load within 2 s"):
            grader.grade(Sample("x"), {})


def test_a_worker_killed_mid_grade_is_a_server_error_and_the_batch_goes_on(sandbox_context):
    import threading

    source = "import time\ndef grade(sample, item):\n    time.sleep(item['sleep'])\n    return item['n']"
    with build_grader({"type": "python", "source": source}, sandbox_context) as grader:
        grader.grade(Sample("x"), {"sleep": 0, "n": 0})  # start the workers
        keepers = [w.process for w in grader.pool.workers if w is not None]
        killer = threading.Timer(0.5, lambda: [os.kill(p.pid, signal.SIGKILL) for p in keepers])
        killer.start()
        items = [{"sleep": 1.5, "n": 0}, {"sleep": 1.5, "n": 1}] + [{"sleep": 0, "n": n} for n in range(2, 10)]
        grades = grader.grade_many([Sample("x")] * len(items), items)
        killer.join()
    server_errors = [g for g in grades if g.metadata["errors"]["python_grader_server_error"]]
    assert server_errors and all("died" in g.metadata["errors"]["python_grader_server_error_details"]
                                 for g in server_errors)
    assert all(g.reward == i for i, g in enumerate(grades) if g not in server_errors)
    assert len(server_errors) <= len(keepers)  # only the grades in flight are lost
