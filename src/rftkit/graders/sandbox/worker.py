"""The grading server that runs inside the sandbox (standard library only).

Started by the pool as `python -I worker.py CONFIG_JSON`: it enters the jail (see jail.py),
says `{"op": "ready"}` and then answers one JSON line per request, in order:

    {"id": 3, "op": "load", "key": K, "source": S}    compile a python grader, keep its grade()
    {"id": 4, "op": "grade", "key": K, "sample": {...}, "item": {...}, "wall": 5, "cpu": 5}
    {"id": 5, "op": "tests", "code": C, "tests": [...], "time_limit": 2}
    -> {"id": 4, "ok": true, "value": 0.75, "seconds": 0.0004}
    -> {"id": 5, "ok": false, "kind": "python_grader_runtime_error", "details": "..."}

Nothing that depends on a sample runs in this process: the grader's module is executed here
once, at load (inside the jail, under a wall-clock alarm), and every grade runs in a child
forked from it (copy-on-write, so the loaded grader comes along for free), with its own CPU
limit and a wall-clock deadline; the child cannot reach the protocol's pipes. A code_tests test
case runs in a child that execs a fresh interpreter instead, so that the expected outputs in
this process's memory are not in its own (tests_runner.py). Each grade starts from the same freshly loaded
state, and a grade that loops, crashes or exhausts memory costs only its child. After each
request the server kills every other process in its PID namespace, waits for them, and
empties /tmp and /dev/shm, so nothing one grade does reaches the next.
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import select
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jail  # noqa: E402  (sibling files: rftkit itself is not importable here, and after
import tests_runner  # noqa: E402  the chroot not even this directory is)

del sys.path[0]

MAX_REPLY_BYTES = 1 << 20
DETAILS_CHARS = 2000
PRIVATE_DIRS = jail.PRIVATE_DIRS


def write_message(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def read_lines(fd: int):
    buffer = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield from lines


def failure(kind: str, details: str) -> dict:
    return {"ok": False, "kind": kind, "details": details[-DETAILS_CHARS:]}


def runtime_error(err: BaseException) -> dict:
    """The user code's exception, as the last frames of its traceback."""
    try:
        import traceback  # here, not at the top: every module the server holds makes each fork dearer

        lines = traceback.format_exception(type(err), err, err.__traceback__)
    except BaseException:  # out of memory, say: the exception's name must still come through
        lines = [f"{type(err).__name__}: {err}"]
    return failure("python_grader_runtime_error", "".join(lines[-4:]).strip())


def as_number(value) -> dict:
    import numbers

    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return {"ok": True, "value": float(value)}  # NaN and inf travel as JSON NaN/Infinity
    shown = repr(value)[:80]
    return failure("python_grader_runtime_error", f"grade() returned {type(value).__name__} {shown}, not a number")


def number_reply(value) -> bytes:
    """The reply line for a grade's return value. Plain floats and ints, by far the common
    case, are formatted directly: every object the child touches is a page it must copy."""
    if type(value) is float or type(value) is int:
        value = float(value)
        text = repr(value) if value == value and abs(value) != math.inf else json.dumps(value)
        return b'{"ok": true, "value": %s}\n' % text.encode()
    return (json.dumps(as_number(value)) + "\n").encode()


def wait_child(pid: int, deadline: float) -> int | None:
    """The child's wait status, or None when it ran past the deadline (it is then killed)."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        os.close(pidfd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return status if ready else None


def describe_exit(status: int, cpu_seconds: int) -> dict:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return failure("unresponsive_reward_error", f"killed at the CPU limit of {cpu_seconds} s")
        return failure("python_grader_runtime_error", f"the grader process was killed by {signal.Signals(sig).name}")
    return failure("python_grader_runtime_error", f"the grader process exited with status {os.waitstatus_to_exitcode(status)} before returning")


class Server:
    wait = staticmethod(wait_child)

    def __init__(self, requests_fd: int, replies_fd: int, binds: list[str] = ()):
        self.requests_fd, self.replies_fd = requests_fd, replies_fd
        # entries of the private dirs that hold the jail's own read-only binds: never removed
        self.protected = {b for b in binds if any(b.startswith(d + "/") for d in PRIVATE_DIRS)}
        self.programs: dict[str, object] = {}  # key -> grade function, or the load error (str)

    def serve(self) -> None:
        for line in read_lines(self.requests_fd):
            request = json.loads(line)
            start = time.perf_counter()
            try:
                reply = getattr(self, "op_" + request["op"])(request)
            except Exception as err:  # a bug here must not take the worker down
                reply = failure("python_grader_server_error", f"{type(err).__name__}: {err}")
            try:
                self.clean_up()
                clean = True
            except Exception:  # something the grader left cannot be removed: retire this worker
                clean = False
            reply.update(id=request.get("id"), seconds=time.perf_counter() - start)
            write_message(self.replies_fd, reply)
            if not clean:
                os._exit(76)  # the pool sees EOF and starts a fresh worker

    # ------------------------------------------------------------------ requests

    def op_ping(self, request: dict) -> dict:
        return {"ok": True, "value": os.getpid()}

    def op_load(self, request: dict) -> dict:
        """Compile and run the grader's module code (under a wall-clock alarm), keep grade()."""
        def on_alarm(signum, frame):
            raise TimeoutError(f"loading took longer than {request['wall']:g} s")

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, request["wall"])
        try:
            namespace = {"__name__": "grader"}
            exec(compile(request["source"], "grader.py", "exec"), namespace)
            grade = namespace.get("grade")
            if not callable(grade):
                raise TypeError("the source defines no function grade(sample, item)")
            self.programs[request["key"]] = grade
            # What is loaded now is shared by every forked grade: keep the collector from
            # walking (and so copying) those pages in each child.
            gc.collect()
            gc.freeze()
            return {"ok": True, "value": None}
        except BaseException as err:
            reply = runtime_error(err)
            self.programs[request["key"]] = "loading the grader failed: " + reply["details"]
            return reply
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)

    def op_grade(self, request: dict) -> dict:
        grade = self.programs.get(request["key"], "the grader was never loaded")
        if isinstance(grade, str):
            return failure("python_grader_runtime_error", grade)
        sample, item = request["sample"], request["item"]
        return self.run_forked(lambda: grade(sample, item), request["wall"], request["cpu"])

    def op_tests(self, request: dict) -> dict:
        return tests_runner.run_tests(self, request)

    # ------------------------------------------------------------------ children

    def run_forked(self, compute, wall: float, cpu: float) -> dict:
        """Run `compute()` in a child; it returns a number (the grade) that comes back on a pipe."""
        cpu_seconds = max(1, math.ceil(cpu))
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            self.enter_child(cpu_seconds)
            me = os.getpid()
            try:
                data = number_reply(compute())
            except BaseException as err:  # SystemExit and KeyboardInterrupt too: the grade failed
                data = (json.dumps(runtime_error(err)) + "\n").encode()
            if os.getpid() == me:  # not a process the grader forked
                try:
                    while data:
                        data = data[os.write(write_fd, data):]
                except BaseException:
                    os._exit(70)
            os._exit(0)
        os.close(write_fd)
        data, in_time = self.read_reply(read_fd, time.monotonic() + wall)
        os.close(read_fd)
        if in_time and data:  # the answer is in: clean_up kills and reaps the child (no need to wait)
            return json.loads(data)
        status = wait_child(pid, time.monotonic() + (1.0 if in_time else 0.0))
        if not in_time:
            return failure("unresponsive_reward_error", f"no result within the wall-clock limit of {wall:g} s")
        return describe_exit(status, cpu_seconds) if status is not None else failure(
            "unresponsive_reward_error", "the grader returned no result")

    def enter_child(self, cpu_seconds: int) -> None:
        """What every child does first: drop the protocol, take its own CPU limit."""
        os.close(self.requests_fd)  # the protocol is the server's: a grade must not forge replies
        os.close(self.replies_fd)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))

    @staticmethod
    def read_reply(fd: int, deadline: float) -> tuple[bytes, bool]:
        """One line from the child (or what came before EOF); False when the deadline passed."""
        data = b""
        while b"\n" not in data and len(data) < MAX_REPLY_BYTES:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return data, False
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data += chunk
        return data.split(b"\n", 1)[0], True

    def clean_up(self) -> None:
        """Kill and reap every other process in the namespace; empty the private directories."""
        # kill(-1) means "every process I may signal": inside the jail that is the grade's
        # processes, outside it (as root) the whole machine. Refuse unless we are PID 1 of
        # our own namespace and not root.
        if os.getpid() != 1 or os.getuid() == 0:
            raise RuntimeError("clean_up runs only as PID 1 of a sandbox, never outside one")
        # Kill everyone, wait for one death, repeat: a process forked while kill(-1) ran is
        # caught by the next round. SIGKILLed processes die at once; one that cannot (stuck in
        # the kernel) blocks this worker, and the pool replaces a worker that stops answering.
        while True:
            try:
                os.kill(-1, signal.SIGKILL)  # from PID 1: everyone in the namespace but us
            except ProcessLookupError:
                pass
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break  # no children left: nothing counts against RLIMIT_NPROC any more
        for directory in PRIVATE_DIRS:
            for entry in os.scandir(directory):
                if not any(b == entry.path or b.startswith(entry.path + "/") for b in self.protected):
                    remove(entry.path)


def remove(path: str) -> None:
    """Delete a file or tree the grader left, even one it made read-only (it owns them all)."""
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        for entry in os.scandir(path):
            remove(entry.path)
        os.rmdir(path)
    else:
        os.unlink(path)


def join_cgroups(procs_files: list[str]) -> None:
    """Move this process into the worker's cgroups before anything forks (see cgroups.py)."""
    if not procs_files:
        raise jail.JailError("no cgroups were given: the sandbox does not start without them")
    for path in procs_files:
        with open(path, "w") as procs:
            procs.write(str(os.getpid()))


def main() -> None:
    config = json.loads(sys.argv[1])
    try:
        join_cgroups(config.get("cgroups", []))
        jail.enter(config)
    except Exception as err:
        write_message(1, {"op": "fatal", "details": f"{type(err).__name__}: {err}"})
        os._exit(3)
    requests_fd, replies_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # what user code prints must not reach the protocol
        os.dup2(null, fd)
    write_message(replies_fd, {"op": "ready"})
    Server(requests_fd, replies_fd, config["binds"]).serve()


if __name__ == "__main__":
    main()
