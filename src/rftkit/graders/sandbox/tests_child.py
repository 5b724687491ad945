"""The process that runs a sample's code for one code_tests test case (standard library only).

tests_runner.py forks, and the child execs a fresh interpreter on this source
(`python -I -c SOURCE KIND ADDRESS`): a new address space that holds the sample's code (read from
CODE_PATH) and nothing else of the worker's. It writes one byte on fd 3 when it is about to run
the code: the case's time limit counts from there. No expected output, no other test case and no
verdict is ever in this process, so there is nothing to read out of frames, `gc` or
/proc/self/mem. This process never decides a verdict; the worker does.

- KIND "program": run the code as `__main__` (stdin and stdout are the test's files), exit
  with status 0 when it ends normally. The worker compares the output.
- KIND "assert": run the code as module `solution`. Then, and only then, a thread of the
  runner's connects to the worker's abstract unix socket ADDRESS, receives a nonce the worker
  has just drawn together with the assertion (32 hex digits, then the assertion), runs the
  assertion in the code's namespace, and sends the nonce back. The worker counts the assertion
  as passed only if that nonce comes back and the process exits 0.

The code's top level runs before the nonce exists. To keep later code (the functions the
assertion calls) from reading the nonce out of this process, an audit hook, installed before
the code runs and impossible to remove, refuses what reaches frames or raw memory (frames,
`gc`'s object walks, tracing, /proc, ctypes, signal handlers, new audit hooks), what starts
processes, and any socket connect but the runner's own. Signal handlers receive frames and can
be set by means the hook does not see, so the runner clears them all after the top level and
keeps the nonce in a thread of its own: handlers run, and can be set, only in the main thread.
The worker refuses to send the nonce while the code has threads of its own or processes left
running, and the runner refuses to send it back if one is left after the assertion. CPython's
audit hooks are not a security boundary (PEP 578): docs/security.md says what this
does not defend.
"""

import _signal
import _socket
import _thread
import gc
import os
import sys
import types  # noqa: F401  (its import reads a traceback's frame: done here, before the guard)

CODE_PATH = "/tmp/.rftkit-code"
DENIED_EVENTS = frozenset({
    "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile",
    "sys.addaudithook", "sys.monitoring.register_callback", "gc.get_objects", "gc.get_referrers",
    "gc.get_referents", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn", "os.system",
    "subprocess.Popen", "os.symlink", "os.link", "socket.bind", "socket.sendto", "socket.sendmsg",
    "code.__new__",  # hand-made bytecode reads memory it should not
})
FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
DENIED_MODULES = frozenset({
    "ctypes", "_ctypes", "signal", "_signal", "faulthandler", "_posixsubprocess", "_testcapi",
    "_testinternalcapi", "_xxsubinterpreters", "_xxinterpchannels",
})


def make_guard(denied=DENIED_EVENTS, frames=FRAME_ATTRIBUTES, modules=DENIED_MODULES,
               type=type, str=str, bytes=bytes, int=int, ValueError=ValueError):
    """The audit hook and the switch that lets the runner's own connect through.

    Everything it uses is bound here, as defaults and cells: the code may rebind builtins and
    module globals, but cannot reach this closure (frames and gc walks are refused)."""
    permitted = [False]

    def refuse(event):
        raise ValueError(f"{event} is not allowed while an assertion test runs")

    def guard(event, args):
        if event in denied:
            refuse(event)
        if event == "object.__getattr__" and args[1] in frames:
            refuse("reading a frame")
        elif event == "import" and args[0] in modules:
            refuse(f"import {args[0]}")
        elif event in ("open", "os.chdir"):
            path = args[0]
            if type(path) is bytes:
                path = path.decode("latin-1")
            if type(path) is not int and (type(path) is not str or "proc" in path.split("/")):
                refuse(f"{event} of {path!r}")
        elif event == "socket.connect" and not permitted[0]:
            refuse(event)

    def permit(allowed: bool) -> None:
        permitted[0] = allowed

    return guard, permit


def run_program(source: bytes) -> None:
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    status = 0
    try:
        exec(compile(source, "solution.py", "exec"), namespace)
    except SystemExit as err:  # a program may end with exit(0)
        status = 0 if err.code in (None, 0) else 1
    except BaseException:
        status = 1
    try:
        sys.stdout.flush()
    except BaseException:
        status = 1
    os._exit(status)


def make_signal_reset(signals=_signal, range=range, errors=(OSError, ValueError)):
    """A function that clears every timer and puts every signal back to its default action, with
    the real `_signal` functions (bound now, before the code could replace them)."""
    set_handler, set_timer, default = signals.signal, signals.setitimer, signals.SIG_DFL
    timers = (signals.ITIMER_REAL, signals.ITIMER_VIRTUAL, signals.ITIMER_PROF)
    numbers = tuple(range(1, signals.NSIG))

    def reset(kept: list) -> None:
        for which in timers:
            set_timer(which, 0)
        for number in numbers:
            try:  # keep the old handlers: dropping one could run the code's __del__
                kept.append(set_handler(number, default))
            except errors:  # SIGKILL, SIGSTOP and the C library's own cannot be changed
                pass

    return reset


def answer(address: bytes, namespace: dict, tools: tuple) -> None:
    """The runner's thread: connect, receive the nonce and the assertion, run it, send the nonce
    back. It runs outside the main thread, where no signal handler can be set or run, so the
    nonce lives only in this thread's frame, which the guard keeps the code from reaching."""
    exit_, compile_, exec_, fstat, listdir, gc_disable, any_error, socket_type, family, kind, permit = tools
    try:
        channel = socket_type(family, kind)
        permit(True)
        channel.connect(address)
        permit(False)
        inode = fstat(channel.fileno()).st_ino
        message = b""
        while True:
            chunk = channel.recv(1 << 16)
            if not chunk:
                break
            message += chunk
        nonce, test = message[:32], message[32:]
        exec_(compile_(test, "test.py", "exec"), namespace)
        gc_disable()  # the code may have enabled it: no finalizer of its runs from here
        if len(listdir("/proc/self/task")) != 2:  # a thread of the code's could swap the fd below
            exit_(1)
        if fstat(channel.fileno()).st_ino != inode:  # the code put another file on the channel's fd
            exit_(1)
        channel.sendall(nonce)
    except any_error:  # the assertion failed (or anything else did): no nonce
        exit_(1)
    exit_(0)


def run_assertion(source: bytes, address: bytes) -> None:
    """The code's top level, then the runner's thread (`answer`), which ends the process; see the
    module docstring. After the top level only locals bound before it are used (it may rebind
    any global, builtin or module attribute)."""
    exit_, compile_, exec_, any_error = os._exit, compile, exec, BaseException
    tools_after = (os._exit, compile, exec, os.fstat, os.listdir, gc.disable, BaseException,
                   _socket.socket, _socket.AF_UNIX, _socket.SOCK_STREAM)
    gc_disable, gc_callbacks, start_thread, new_lock, answer_ = gc.disable, gc.callbacks, _thread.start_new_thread, _thread.allocate_lock, answer
    reset_signals, kept = make_signal_reset(), []
    guard, permit = make_guard()
    sys.addaudithook(guard)
    del guard  # the hook is reachable from nowhere now
    sys.modules.pop("_signal", None)  # the code may not set handlers (they receive frames) or timers
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec_(compile_(source, "solution.py", "exec"), namespace)
    except any_error:  # SystemExit too: an assertion test may not end before its assertion
        exit_(1)
    gc_disable()  # no finalizer or gc callback of the code's runs in this thread from here
    gc_callbacks.clear()
    reset_signals(kept)  # handlers and timers the code may have set in spite of the guard
    start_thread(answer_, (address, namespace, tools_after + (permit,)))
    waiting = new_lock()
    waiting.acquire()
    waiting.acquire()  # for good: the runner's thread ends the process


def main() -> None:
    kind, address = sys.argv[1], bytes.fromhex(sys.argv[2])
    with open(CODE_PATH, "rb") as code:
        source = code.read()
    os.write(3, b"r")  # the worker starts the case's clock now
    os.close(3)
    if kind == "program":
        run_program(source)
    else:
        run_assertion(source, address)


if __name__ == "__main__":  # run as `python -I -c SOURCE`; imported, it does nothing
    main()
