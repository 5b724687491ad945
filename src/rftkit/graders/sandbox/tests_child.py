"""The process that runs a sample's code for one code_tests test case (standard library only).

tests_runner.py forks, and the child execs a fresh interpreter on this source
(`python -I -c SOURCE KIND ADDRESS`): a new address space that holds the sample's code (read from
CODE_PATH) and nothing else of the worker's. No expected output, no other test case and no
verdict is ever in this process, so there is nothing to read out of frames, `gc` or
/proc/self/mem. This process never decides a verdict; the worker does.

- KIND "program": run the code as `__main__` (stdin and stdout are the test's files), exit
  with status 0 when it ends normally. The worker compares the output.
- KIND "assert": run the code as module `solution`. Then, and only then, connect to the
  worker's abstract unix socket ADDRESS, receive a nonce the worker has just drawn together
  with the assertion, run the assertion in the code's namespace, and send the nonce back. The
  worker counts the assertion as passed only if that nonce comes back and the process exits 0.

The code's top level runs before the nonce exists. To keep later code (the functions the
assertion calls) from reading the nonce out of this process, an audit hook, installed before
the code runs and impossible to remove, refuses what reaches frames or raw memory (frames,
`gc`'s object walks, tracing, /proc, ctypes, signal handlers, new audit hooks), what starts
processes, and any socket connect but the runner's own. The worker also refuses to send the
nonce while the code has threads or processes left running. CPython's audit hooks are not a
security boundary (PEP 578): docs/security-sandbox.md says what this does not defend.
"""

import _socket
import gc
import os
import sys
import types  # noqa: F401  (its import reads a traceback's frame: done here, before the guard)

CODE_PATH = "/tmp/.rftkit-code"
NONCE_BYTES = 32
DENIED_EVENTS = frozenset({
    "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile",
    "sys.addaudithook", "sys.monitoring.register_callback", "gc.get_objects", "gc.get_referrers",
    "gc.get_referents", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn", "os.system",
    "subprocess.Popen", "os.symlink", "os.link", "socket.bind", "socket.sendto", "socket.sendmsg",
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


def run_assertion(source: bytes, address: bytes) -> None:
    """Code, then connect, nonce and assertion, then the nonce back: see the module docstring.
    After the code has run, only locals bound before it are used (it may rebind any global)."""
    exit_, compile_, exec_, fstat, any_error = os._exit, compile, exec, os.fstat, BaseException
    socket_type, gc_disable, gc_callbacks = _socket.socket, gc.disable, gc.callbacks
    guard, permit = make_guard()
    sys.addaudithook(guard)
    sys.modules.pop("_signal", None)  # signal handlers receive frames: keep them out of reach
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec_(compile_(source, "solution.py", "exec"), namespace)
    except any_error:  # SystemExit too: an assertion test may not end before its assertion
        exit_(1)
    gc_disable()  # no finalizer or gc callback runs while the nonce is read
    gc_callbacks.clear()
    channel = socket_type(_socket.AF_UNIX, _socket.SOCK_STREAM)
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
    nonce, test = message[:NONCE_BYTES], message[NONCE_BYTES:]
    try:
        exec_(compile_(test, "test.py", "exec"), namespace)
    except any_error:
        exit_(1)
    if fstat(channel.fileno()).st_ino != inode:  # the code put another file on the channel's fd
        exit_(1)
    channel.sendall(nonce)
    exit_(0)


def main() -> None:
    kind, address = sys.argv[1], bytes.fromhex(sys.argv[2])
    with open(CODE_PATH, "rb") as code:
        source = code.read()
    if kind == "program":
        run_program(source)
    else:
        run_assertion(source, address)


main()
