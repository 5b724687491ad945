"""Enter the sandbox: namespaces, a minimal read-only file system, limits, an unprivileged uid.

Runs inside the worker process before any untrusted code, with only the standard library
(the worker is started as `python -I worker.py`, without rftkit on the path). Every step
that fails raises `JailError`: the worker reports it and exits, and the pool refuses to
grade, so untrusted code never runs outside the sandbox.

What `enter` builds, in order (root is needed for all of it; see docs/graders.md):

1. New mount, network, PID, IPC and UTS namespaces. The new network namespace has only a
   loopback device that is down, so no address at all (127.0.0.1 included) is reachable.
2. A fork: the child is PID 1 of the new PID namespace and serves grades; the parent (the
   "keeper", outside the namespace) only waits for it. When the pool kills the keeper, the
   kernel kills the child (parent-death signal), and with PID 1 every process in the
   namespace: a fork bomb cannot outlive its worker.
3. A new root on a size-capped tmpfs, holding read-only binds of /usr, the Python
   installation and the virtual environment, a few device nodes, a fresh /proc and a private
   /tmp; then chroot into it. The host's /root, /home, /work, /etc (but for the dynamic
   linker's cache) and every job file are out of sight; whatever the code writes lives in
   the tmpfs and vanishes with the namespace.
4. rlimits (address space, file size, processes, open files, CPU, no core files), then an
   unprivileged uid and gid unique to this worker (so RLIMIT_NPROC applies and counts only
   this worker's processes), no supplementary groups, and no_new_privs.
5. A self-check from the inside (`verify`): PID 1, not root, limits set, only `lo` visible,
   an empty environment.

Before `enter`, worker.py has moved the process into its cgroups (cgroups.py), which cap the
processes and memory of the keeper, PID 1 and everything they start.
"""

from __future__ import annotations

import ctypes
import os
import resource
import select
import signal

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
DEVICES = ("null", "zero", "full", "random", "urandom")
PRIVATE_DIRS = ("/tmp", "/dev/shm")  # where grade code may write; emptied after every grade

_libc = ctypes.CDLL(None, use_errno=True)


class JailError(Exception):
    """A step of the sandbox could not be set up; the worker must not serve."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise JailError(f"{what}: {os.strerror(err)} (errno {err})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
           f"mount {source or fstype} on {target}")


def unshare_namespaces() -> None:
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise JailError(
            f"cannot create namespaces: {os.strerror(err)}. The sandbox needs root (CAP_SYS_ADMIN), "
            "as in a container run as root"
        )


def _bind(root: str, path: str, writable: bool = False) -> None:
    target = root + path
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(path, target, None, MS_BIND | MS_REC)
    if not writable:
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)


def build_root(root: str, binds: list[str], links: dict[str, str], uid: int, tmpfs_mb: int) -> None:
    """Mount the sandbox's file system at `root` (an empty host directory) and chroot into it."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # first: nothing below may propagate to the host
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmpfs_mb}m,mode=755")
    for path in binds:
        _bind(root, path)
    for name, target in links.items():
        os.symlink(target, root + name)
    for device in DEVICES:
        if os.path.exists(f"/dev/{device}"):
            _bind(root, f"/dev/{device}", writable=True)
    os.makedirs(root + "/proc")
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for private in PRIVATE_DIRS:
        # Owned by root, world-writable and sticky, like a real /tmp: grade code may create and
        # delete its own files, but not rename or remove what the jail put there (a venv or a
        # Python that lives under /tmp is bound at its own path, below this directory).
        os.makedirs(root + private, exist_ok=True)
        os.chown(root + private, 0, 0)
        os.chmod(root + private, 0o1777)
    os.chdir(root)
    _check(_libc.chroot(b"."), "chroot")
    os.chdir("/tmp")


def set_limits(limits: dict) -> None:
    mb = 1024 * 1024
    for name, value in (
        ("RLIMIT_AS", limits["memory_mb"] * mb),
        ("RLIMIT_FSIZE", limits["file_size_mb"] * mb),
        ("RLIMIT_NPROC", limits["max_processes"]),
        ("RLIMIT_NOFILE", limits["max_open_files"]),
        ("RLIMIT_CORE", 0),
        # The server itself: a lifetime budget. Each grade's process gets its own CPU limit.
        ("RLIMIT_CPU", limits["worker_cpu_seconds"]),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise JailError("could not drop to the sandbox uid")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")


def _die_with_keeper(keeper_alive_fd: int) -> None:
    """Be killed when the keeper dies; it may have died already (before this call)."""
    # Set after the uid change, which would clear it.
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(pdeathsig)")
    ready, _, _ = select.select([keeper_alive_fd], [], [], 0)
    if ready:  # the keeper holds the write end open while it lives: readable means EOF
        os._exit(1)
    os.close(keeper_alive_fd)


def _keep(child: int, alive_write_fd: int) -> None:
    """The keeper: stay outside the namespace, wait for PID 1, exit with its status."""
    for fd in (0, 1):  # only the child speaks the protocol; its death must show as EOF
        os.dup2(os.open(os.devnull, os.O_RDWR), fd)
    del alive_write_fd  # kept open until exit: the child watches it
    _, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def enter(config: dict) -> None:
    """Set up the sandbox; returns in PID 1 of the new namespaces, as the sandbox uid."""
    unshare_namespaces()
    alive_read, alive_write = os.pipe()
    child = os.fork()
    if child:
        os.close(alive_read)
        _keep(child, alive_write)
    os.close(alive_write)
    uid = config["uid"]
    build_root(config["root"], config["binds"], config["links"], uid, config["limits"]["tmpfs_mb"])
    set_limits(config["limits"])
    drop_privileges(uid)
    _die_with_keeper(alive_read)
    os.environ.clear()
    verify(config["limits"])


def verify(limits: dict) -> None:
    """Check every layer from the inside before serving; any doubt and the worker refuses."""
    problems = []
    if os.getpid() != 1:
        problems.append(f"not PID 1 of a new PID namespace (pid {os.getpid()})")
    if 0 in (os.getuid(), os.geteuid(), os.getgid(), os.getegid()):
        problems.append("still root")
    if resource.getrlimit(resource.RLIMIT_NPROC)[1] != limits["max_processes"]:
        problems.append("RLIMIT_NPROC is not set")
    if resource.getrlimit(resource.RLIMIT_AS)[1] != limits["memory_mb"] * 1024 * 1024:
        problems.append("RLIMIT_AS is not set")
    with open("/proc/net/dev") as devices:  # the new network namespace holds only loopback
        interfaces = [line.split(":")[0].strip() for line in devices.readlines()[2:]]
    if interfaces != ["lo"]:
        problems.append(f"network interfaces {interfaces} visible")
    if os.environ:
        problems.append("environment not empty")
    if problems:
        raise JailError("the sandbox failed its self-check: " + "; ".join(problems))
