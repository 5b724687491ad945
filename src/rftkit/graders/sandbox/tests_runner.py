"""Running a sample's code against test cases, inside the sandbox (standard library only).

Two kinds of test case, as competitive-programming and unit-test graders write them:

- `{"stdin": "1 2\\n", "expected_stdout": "3\\n"}`: the code runs as a program (`__name__ ==
  "__main__"`) with that standard input; it passes when it exits normally (status 0) and its
  output equals the expected one, ignoring trailing whitespace on each line and trailing
  blank lines.
- `{"assert": "assert add(1, 2) == 3"}`: the code runs as a module named `solution`, then the
  statement runs in its namespace; it passes when both complete.

Each test case runs in a fresh interpreter (fork, then exec of tests_child.py), so nothing of
this process's memory — the expected outputs, the other test cases, the results so far — is
in the process that runs the code, and one crash or `exit()` cannot affect the other cases.
Only this process decides a verdict. A program's verdict is its exit status and output,
compared here. An assertion's verdict is a nonce drawn here only after the code's top level
has run, sent with the assertion to the child over a socket the code cannot connect to, and
expected back once the assertion has completed (tests_child.py says how the child guards it).
Code that exits early, with any status, passes no assertion.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time

STDIN_PATH = "/tmp/.rftkit-stdin"
STDOUT_PATH = "/tmp/.rftkit-stdout"
CODE_PATH = "/tmp/.rftkit-code"  # tests_child.py reads the code here
NONCE_BYTES = 32
START_SECONDS = 10.0  # for a fresh interpreter to start, on top of the case's own time limit
# Read now: after the chroot this directory is out of sight.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests_child.py"), encoding="utf-8") as _child:
    CHILD_SOURCE = _child.read()


def normalize_output(text: str) -> str:
    """
    >>> normalize_output("3  \\n\\n")
    '3'
    """
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def run_tests(server, request: dict) -> dict:
    code, tests, limit = request["code"], request["tests"], request["time_limit"]
    try:
        compile(code, "solution.py", "exec")
    except (SyntaxError, ValueError) as err:
        results = [f"failed: the code does not compile ({type(err).__name__}: {err})"] * len(tests)
        return {"ok": True, "value": {"passed": 0, "total": len(tests), "results": results}}
    results = []
    for test in tests:
        results.append(run_one(server, code, test, limit))
        server.clean_up()
    passed = sum(result == "passed" for result in results)
    return {"ok": True, "value": {"passed": passed, "total": len(tests), "results": results}}


def run_one(server, code: str, test: dict, limit: float) -> str:
    """One test case in a fresh child; the verdict as a results entry ("passed" or "failed: ...")."""
    for path, text in ((CODE_PATH, code), (STDIN_PATH, test.get("stdin") or "")):
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
    assertion = test.get("assert")
    listener = None
    if assertion is not None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(b"\0rftkit-verdict-" + os.urandom(8).hex().encode())  # abstract: no file to open
        listener.listen(1)
    kind, address = ("assert", listener.getsockname()) if listener else ("program", b"")
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        start_child(server, limit, kind, address, ready_write)
    os.close(ready_write)
    try:
        deadline = wait_ready(ready_read, pid, limit)
        if deadline is None:  # the interpreter died or hung before the code began: its status says why
            return exit_verdict(server.wait(pid, time.monotonic()), limit) or "failed: the test did not start"
        if listener is None:
            return judge_program(server, pid, deadline, limit, test["expected_stdout"])
        return judge_assertion(server, pid, listener, deadline, limit, assertion)
    finally:
        os.close(ready_read)
        if listener is not None:
            listener.close()


def start_child(server, limit: float, kind: str, address: bytes, ready_write: int) -> None:
    """In the forked child: limits, stdio, then exec a fresh interpreter. Never returns."""
    try:
        server.enter_child(max(1, int(limit + 0.999)))
        if ready_write != 3:
            os.dup2(ready_write, 3)  # where tests_child.py says it is ready
        os.set_inheritable(3, True)
        stdin = os.open(STDIN_PATH, os.O_RDONLY)
        stdout = os.open(STDOUT_PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_WRONLY)
        for fd, target in ((stdin, 0), (stdout, 1), (null, 2)):
            os.dup2(fd, target)
        os.closerange(4, 1 << 16)  # the listener and every other descriptor of the server's
        os.execv(sys.executable, [sys.executable, "-I", "-c", CHILD_SOURCE, kind, address.hex()])
    finally:
        os._exit(127)


def wait_ready(ready_read: int, pid: int, limit: float) -> float | None:
    """The case's wall-clock deadline, counted from when the fresh interpreter is about to run
    the code (its start-up, slow on a busy machine, is not the code's time); None if it never
    gets there."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([ready_read, pidfd], [], [], START_SECONDS)
    finally:
        os.close(pidfd)
    if ready_read in ready and os.read(ready_read, 1) == b"r":
        return time.monotonic() + limit
    return None


def exit_verdict(status: int | None, limit: float) -> str | None:
    """The failure an exit status means (None: it exited with 0)."""
    if status is None:
        return f"failed: time limit of {limit:g} s exceeded"
    code = os.waitstatus_to_exitcode(status)
    if code == -signal.SIGXCPU:  # the CPU limit, which equals the time limit
        return f"failed: time limit of {limit:g} s exceeded"
    if code != 0:
        return "failed: " + (f"killed by signal {-code}" if code < 0 else "error or wrong exit status")
    return None


def judge_program(server, pid: int, deadline: float, limit: float, expected: str) -> str:
    failed = exit_verdict(server.wait(pid, deadline), limit)
    if failed:
        return failed
    with open(STDOUT_PATH, encoding="utf-8", errors="replace") as stdout:
        output = stdout.read(len(expected) + (1 << 20))
    return "passed" if normalize_output(output) == normalize_output(expected) else "failed: wrong output"


def judge_assertion(server, pid: int, listener: socket.socket, deadline: float, limit: float,
                    assertion: str) -> str:
    channel = accept_runner(listener, pid, deadline)
    if channel is None:  # the child ended (or ran out of time) before its code's top level did
        failed = exit_verdict(server.wait(pid, deadline), limit)
        return failed or "failed: the code exited before the test ran"
    with channel:
        stray = stray_activity(pid)
        if stray:
            os.kill(pid, signal.SIGKILL)
            server.wait(pid, deadline)
            return f"failed: {stray}"
        nonce = os.urandom(NONCE_BYTES // 2).hex().encode()  # drawn now: it did not exist while the code ran
        try:
            channel.sendall(nonce + assertion.encode())
            channel.shutdown(socket.SHUT_WR)
        except OSError:  # the child is gone: its exit status says why
            pass
        reply = read_until_eof(channel, deadline)
    failed = exit_verdict(server.wait(pid, deadline), limit)
    if failed:
        return failed
    return "passed" if reply == nonce else "failed: the test did not complete"


def accept_runner(listener: socket.socket, pid: int, deadline: float) -> socket.socket | None:
    """The child's connection, once its code's top level has run; None if it exits first."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([listener, pidfd], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        os.close(pidfd)
    if listener not in ready:
        return None
    channel, _ = listener.accept()
    peer_pid = int.from_bytes(channel.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[:4], "little")
    if peer_pid != pid:
        channel.close()
        return None
    return channel


def stray_activity(pid: int, tries: int = 20) -> str | None:
    """Threads or processes the code left running, which could read what comes next: the child
    may have two threads, its main one and the runner's. A thread that was joined may still be
    listed for an instant after the join: look a few times."""
    for _ in range(tries):
        threads = len(os.listdir(f"/proc/{pid}/task"))
        others = [entry for entry in os.listdir("/proc") if entry.isdigit() and int(entry) not in (1, pid)]
        if threads == 2 and not others:
            return None
        time.sleep(0.005)
    return "the code left threads running" if threads != 2 else "the code left processes running"


def read_until_eof(channel: socket.socket, deadline: float, most: int = 4096) -> bytes:
    data = b""
    while len(data) < most:
        ready, _, _ = select.select([channel], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = channel.recv(most)
        if not chunk:
            break
        data += chunk
    return data
