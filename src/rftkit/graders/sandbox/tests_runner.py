"""Running a sample's code against test cases, inside the sandbox (standard library only).

Two kinds of test case, as competitive-programming and unit-test graders write them:

- `{"stdin": "1 2\\n", "expected_stdout": "3\\n"}`: the code runs as a program (`__name__ ==
  "__main__"`) with that standard input; it passes when it exits normally (status 0) and its
  output equals the expected one, ignoring trailing whitespace on each line and trailing
  blank lines.
- `{"assert": "assert add(1, 2) == 3"}`: the code runs as a module named `solution`, then the
  statement runs in its namespace; it passes when both complete.

Each test case runs in its own forked child (so one crash or `exit()` cannot affect the
others). Only the harness decides the verdict, and not through a channel the code can reach:
a program's verdict is its exit status and output, compared here; an assertion's verdict is
an exit status drawn at random per test case, which the code would have to dig out of the
harness's memory to fake. Code that exits early with status 0 passes no assertion.
"""

from __future__ import annotations

import os
import signal
import sys
import time

STDIN_PATH = "/tmp/.rftkit-stdin"
STDOUT_PATH = "/tmp/.rftkit-stdout"


def normalize_output(text: str) -> str:
    """
    >>> normalize_output("3  \\n\\n")
    '3'
    """
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def run_tests(server, request: dict) -> dict:
    code, tests, limit = request["code"], request["tests"], request["time_limit"]
    try:
        compiled = compile(code, "solution.py", "exec")
    except (SyntaxError, ValueError) as err:
        results = [f"failed: the code does not compile ({type(err).__name__}: {err})"] * len(tests)
        return {"ok": True, "value": {"passed": 0, "total": len(tests), "results": results}}
    results = []
    for test in tests:
        results.append(run_one(server, compiled, test, limit, request))
        server.clean_up()
    passed = sum(result == "passed" for result in results)
    return {"ok": True, "value": {"passed": passed, "total": len(tests), "results": results}}


def run_one(server, compiled, test: dict, limit: float, request: dict) -> str:
    assertion = test.get("assert")
    expected = test.get("expected_stdout", "")
    with open(STDIN_PATH, "w", encoding="utf-8") as stdin:
        stdin.write(test.get("stdin") or "")
    success_status = 3 + int.from_bytes(os.urandom(2), 'big') % 117 if assertion else 0
    pid = os.fork()
    if pid == 0:
        server.enter_child(max(1, int(limit + 0.999)))
        # The code runs in this process: take the expected outputs out of its reach.
        for each in request.get("tests", []):
            each.clear()
        request.clear()
        expected = None  # noqa: F841
        os._exit(run_in_child(compiled, assertion, success_status))
    started = time.monotonic()
    status = server.wait(pid, started + limit)
    if status is None:
        return f"failed: time limit of {limit:g} s exceeded"
    code = os.waitstatus_to_exitcode(status)
    if code == -signal.SIGXCPU:  # the CPU limit, which equals the time limit
        return f"failed: time limit of {limit:g} s exceeded"
    if code != success_status:
        return "failed: " + (f"killed by signal {-code}" if code < 0 else "error or wrong exit status")
    if assertion:
        return "passed"
    with open(STDOUT_PATH, encoding="utf-8", errors="replace") as stdout:
        output = stdout.read(len(expected) + (1 << 20))
    if normalize_output(output) == normalize_output(expected):
        return "passed"
    return "failed: wrong output"


def run_in_child(compiled, assertion: str | None, success_status: int) -> int:
    """The child's whole life: redirect stdio, run the code (and assertion), return a status."""
    stdin = os.open(STDIN_PATH, os.O_RDONLY)
    stdout = os.open(STDOUT_PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    namespace = {"__name__": "solution" if assertion else "__main__", "__builtins__": __builtins__}
    try:
        exec(compiled, namespace)
        if assertion:
            exec(compile(assertion, "test.py", "exec"), namespace)
        status = success_status
    except SystemExit as err:  # a program may end with exit(0); an assertion test may not
        status = 0 if err.code in (None, 0) and not assertion else 1
    except BaseException:
        status = 1
    try:
        sys.stdout.flush()
    except BaseException:
        status = 1
    return status
