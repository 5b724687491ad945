"""code_tests verdicts, attacked by the code under test: every submission here has a wrong
`add` (it subtracts) and tries to pass anyway, by reading the expected output or the verdict
out of memory, by rewiring the runner, or by faking its way out. Each must earn 0; a right
answer graded by the same warm pool still earns full credit."""

import pytest

from rftkit.graders import build_grader
from rftkit.types import Sample

PROGRAM_TESTS = [{"stdin": "1 2\n", "expected_stdout": "3\n"}, {"stdin": "10 -4\n", "expected_stdout": "6\n"}]
ASSERT_TESTS = [{"assert": "assert add(2, 2) == 4"}, {"assert": "assert add(-1, 1) == 0"}]
WRONG = "def add(a, b):\n    return a - b\n"
CORRECT = ("import collections\nPair = collections.namedtuple('Pair', 'a b')\n\n"
           "def add(a, b):\n    pair = collections.namedtuple('Sum', 'a b')(a, b)\n    return Pair(*pair).a + b\n\n"
           "if __name__ == '__main__':\n    print(add(*map(int, input().split())))\n")

# The expected output of the case whose stdin this program reads, wherever it may lie.
STEAL_EXPECTED = WRONG + r'''
import gc, json, sys
stdin = sys.stdin.read()
needle = ('"stdin": ' + json.dumps(stdin) + ', "expected_stdout": "').encode()

def pick(blob):
    at = blob.find(needle)
    if at < 0:
        return None
    start = at + len(needle)
    return json.loads(b'"' + blob[start:blob.find(b'"', start)] + b'"')

def from_frames():
    frame = sys._getframe()
    while frame is not None:
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            if isinstance(value, str):
                value = value.encode()
            if isinstance(value, bytes) and pick(value) is not None:
                return pick(value)
            if isinstance(value, dict) and value.get("stdin") == stdin and "expected_stdout" in value:
                return value["expected_stdout"]
        frame = frame.f_back

def from_gc():
    for obj in gc.get_objects():
        if isinstance(obj, dict) and obj.get("stdin") == stdin and "expected_stdout" in obj:
            return obj["expected_stdout"]
        if isinstance(obj, list):
            for value in obj:
                if isinstance(value, (str, bytes)) and pick(value if isinstance(value, bytes) else value.encode()):
                    return pick(value if isinstance(value, bytes) else value.encode())

def from_memory(pid):
    try:
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
            for line in maps:
                span, perms = line.split()[:2]
                start, end = (int(x, 16) for x in span.split("-"))
                if perms.startswith("rw") and end - start < 1 << 26:
                    try:
                        mem.seek(start)
                        found = pick(mem.read(end - start))
                    except (OSError, ValueError, OverflowError):
                        continue
                    if found is not None:
                        return found
    except OSError:
        return None

stolen = from_frames() or from_gc() or from_memory("self") or from_memory(1)
print(stolen if stolen is not None else add(*map(int, stdin.split())), end="")
'''

# Each one attacks the assertion verdict; add() stays wrong throughout.
ASSERT_ATTACKS = {
    "parent_frame_status": WRONG + '''
import os, sys
frame = sys._getframe(1)
while frame is not None:
    for name, value in frame.f_locals.items():
        if name in ("success_status", "status") and isinstance(value, int):
            os._exit(value)
    frame = frame.f_back
''',
    "traceback_frames_during_the_assertion": '''
import os

def add(a, b):
    try:
        raise ZeroDivisionError
    except ZeroDivisionError as err:
        frame = err.__traceback__.tb_frame
    while frame is not None:
        for name, value in frame.f_locals.items():
            if name == "success_status":
                os._exit(value)
            if name == "nonce" and isinstance(value, bytes):
                for fd in range(3, 64):
                    try:
                        os.write(fd, value)
                    except OSError:
                        pass
                os._exit(0)
        frame = frame.f_back
    return a - b
''',
    "monkeypatch_the_runner": WRONG + '''
import builtins, os, sys
builtins.exec = lambda *args, **kwargs: None
builtins.compile = lambda *args, **kwargs: None
for name in ("tests_runner", "__main__"):
    module = sys.modules.get(name)
    for attribute in dir(module):
        if attribute.startswith("run_") or attribute in ("main", "make_guard"):
            setattr(module, attribute, lambda *args, **kwargs: 0)
''',
    "fake_verdict_lines": WRONG + '''
import sys
print("passed")
print('{"ok": true, "value": {"passed": 2, "total": 2, "results": ["passed", "passed"]}}')
sys.stdout.flush()
''',
    "exit_zero_early": WRONG + "import sys\nsys.exit(0)\n",
    "os_exit_zero_early": WRONG + "import os\nos._exit(0)\n",
    "os_exit_zero_inside_the_assertion": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "kill_itself": WRONG + "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "signal_handler_frame": WRONG + '''
import os, signal
def handler(signum, frame):
    while frame is not None:
        if "nonce" in frame.f_locals:
            os.write(3, frame.f_locals["nonce"])
            os._exit(0)
        frame = frame.f_back
signal.signal(signal.SIGUSR1, handler)
''',
    "signal_timer_set_past_the_guard_reads_the_channel": WRONG + '''
import _imp, importlib.machinery, os
signals = _imp.create_builtin(importlib.machinery.ModuleSpec("_signal", importlib.machinery.BuiltinImporter))

def handler(signum, frame):  # runs between the runner's steps: wait on its channel for the nonce
    signals.setitimer(0, 0)
    for fd in range(3, 32):
        try:
            data = os.read(fd, 4096)
        except OSError:
            continue
        if len(data) > 32:
            os.write(fd, data[:32])
            os._exit(0)
    while frame is not None:
        if isinstance(frame.f_locals.get("nonce"), bytes):
            os.write(3, frame.f_locals["nonce"])
            os._exit(0)
        frame = frame.f_back

signals.signal(14, handler)  # SIGALRM
signals.setitimer(0, 0.001, 0.001)  # ITIMER_REAL
''',
    "signal_handler_set_from_the_assertion": '''
import _imp, importlib.machinery, os

def add(a, b):
    signals = _imp.create_builtin(importlib.machinery.ModuleSpec("_signal", importlib.machinery.BuiltinImporter))
    def handler(signum, frame):
        while frame is not None:
            if isinstance(frame.f_locals.get("nonce"), bytes):
                os.write(3, frame.f_locals["nonce"])
                os._exit(0)
            frame = frame.f_back
    signals.signal(10, handler)  # SIGUSR1
    os.kill(os.getpid(), 10)
    return a - b
''',
    "thread_left_waiting_for_the_nonce": WRONG + '''
import os, threading, time
def wait_and_steal():
    time.sleep(30)
threading.Thread(target=wait_and_steal, daemon=True).start()
''',
    "read_own_memory_during_the_assertion": '''
import os

def add(a, b):  # the nonce arrives just before the assertion's text: find it in memory
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if perms.startswith("rw"):
                try:
                    mem.seek(start)
                    blob = mem.read(end - start)
                except OSError:
                    continue
                at = blob.find(b"assert add(2, 2)")
                if at >= 32:
                    for fd in range(3, 64):
                        try:
                            os.write(fd, blob[at - 32:at])
                        except OSError:
                            pass
                    os._exit(0)
    return a - b
''',
}


@pytest.fixture(scope="module")
def grader(sandbox_limits):
    from rftkit.graders import GraderContext

    with build_grader({"type": "code_tests", "name": "add", "tests": "{{ item.tests }}", "time_limit_seconds": 2},
                      GraderContext(sandbox=sandbox_limits)) as made:
        yield made


def program(body: str) -> str:
    return f"```python\n{body}\n```\n"


def test_a_right_answer_still_gets_full_credit(grader):
    grade = grader.grade(Sample(program(CORRECT)), {"tests": PROGRAM_TESTS + ASSERT_TESTS})
    assert grade.reward == 1.0, grade.metadata["scores"]["results"]


def test_expected_output_is_nowhere_in_the_programs_reach(grader):
    """Frames, gc, /proc/self/mem and the worker's /proc/1/mem: the expected output is in none."""
    grade = grader.grade(Sample(program(STEAL_EXPECTED)), {"tests": PROGRAM_TESTS})
    assert grade.reward == 0.0, grade.metadata["scores"]["results"]
    assert grade.metadata["scores"]["results"] == ["failed: wrong output"] * 2
    assert grader.grade(Sample(program(CORRECT)), {"tests": PROGRAM_TESTS}).reward == 1.0


@pytest.mark.parametrize("name", sorted(ASSERT_ATTACKS))
def test_assertion_verdict_cannot_be_forged(grader, name):
    grade = grader.grade(Sample(program(ASSERT_ATTACKS[name])), {"tests": ASSERT_TESTS})
    assert grade.reward == 0.0, grade.metadata["scores"]["results"]
    assert all(result.startswith("failed") for result in grade.metadata["scores"]["results"])


def test_threads_left_running_fail_with_a_reason_and_joined_ones_do_not(grader):
    left = grader.grade(Sample(program(ASSERT_ATTACKS["thread_left_waiting_for_the_nonce"])), {"tests": ASSERT_TESTS[:1]})
    assert left.metadata["scores"]["results"] == ["failed: the code left threads running"]
    joined = CORRECT + "import threading\nworker = threading.Thread(target=add, args=(1, 2))\nworker.start()\nworker.join()\n"
    assert grader.grade(Sample(program(joined)), {"tests": ASSERT_TESTS}).reward == 1.0


def test_a_thread_the_assertion_leaves_running_fails_it(grader):
    """Such a thread could swap the runner's channel for a pipe of its own as the nonce goes out."""
    lingering = CORRECT.replace("    return Pair(*pair).a + b",
                                "    import threading, time\n"
                                "    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
                                "    return Pair(*pair).a + b")
    grade = grader.grade(Sample(program(lingering)), {"tests": ASSERT_TESTS[:1]})
    assert grade.metadata["scores"]["results"] == ["failed: error or wrong exit status"]


def test_an_assertion_that_fails_or_exits_early_is_told_apart(grader):
    results = grader.grade(Sample(program(WRONG + "import os\nos._exit(0)\n")), {"tests": ASSERT_TESTS[:1]})
    assert results.metadata["scores"]["results"] == ["failed: the code exited before the test ran"]
    failing = grader.grade(Sample(program(WRONG)), {"tests": ASSERT_TESTS[:1]})
    assert failing.metadata["scores"]["results"] == ["failed: error or wrong exit status"]
