"""The worker side of the service: each job runs as `python -m rftkit.cli train` in its own process.

One thread in the server process loops every `poll` seconds:

1. validate new jobs (data against the grader, the number of steps) -> queued or failed;
2. for each running child: copy its new events.jsonl lines into the store, stop it when the
   job was cancelled (SIGKILL to its process group, then to its grader sandboxes, whose
   cgroups and temporary folders are removed) or asked to pause (SIGTERM: the trainer
   finishes the step, writes a checkpoint and exits 3), and record how it ended;
3. start queued jobs while fewer than `workers` run: with `--resume` from the newest
   checkpoint when the run directory has one, after rewinding its events to that step.

Children die with the server (PR_SET_PDEATHSIG sends them SIGTERM, so they pause with a
checkpoint). On start, `recover` waits for such orphans, reads what they wrote, and puts
jobs left running back in the queue: they resume from their last checkpoint.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rftkit.errors import RftkitError
from rftkit.graders.network import WORKER_ENV, NetworkPolicy
from rftkit.graders.sandbox import remove_leftovers
from rftkit.jobs import runs
from rftkit.jobs.models import fine_tuned_name
from rftkit.jobs.states import ACTIVE, JobConflict
from rftkit.jobs.store import Store, new_id, now
from rftkit.jobs.validate import PLAN_FILE, validate_job
from rftkit.scale.launch import PAUSED_EXIT, RANKS_STOPPED

ATTEMPT_MARK = "rftkit serve: attempt"  # worker.log: where each start of the job's trainer begins
ORPHAN_WAIT_S = 120.0


def trainer_arguments(spec: dict, ray: str | None = None, nproc: int = 1, batch_size: int | None = None) -> list[str]:
    """The `rftkit train` flags of `rftkit serve --ray` and `--nproc` for a job (its spec as
    created): its rollouts and grading on Ray, its trainer as `nproc` data-parallel ranks (no more
    than the `batch_size` prompts of its step, as validation resolved it), or with both the ranks
    as Ray actors. Supervised jobs get none.

    >>> rl = {"method": {"type": "reinforcement"}}
    >>> trainer_arguments(rl, "10.0.0.5:6379"), trainer_arguments(rl, "local", nproc=4, batch_size=2)
    (['--ray-address', '10.0.0.5:6379'], ['--ray', '--nproc', '2'])
    >>> trainer_arguments({"method": {"type": "supervised"}}, "local", nproc=2), trainer_arguments(rl)
    ([], [])
    """
    if (spec.get("method") or {}).get("type") != "reinforcement":
        return []
    flags = [] if ray is None else ["--ray"] if ray == "local" else ["--ray-address", ray]
    ranks = min(nproc, batch_size) if batch_size else nproc
    return flags + (["--nproc", str(ranks)] if ranks > 1 else [])


def descendants(root: int) -> list[int]:
    """The processes under `root` (its children, theirs, ...), from /proc; [] where there is none.
    A job's data-parallel ranks run in sessions of their own, so `killpg` does not reach them."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def kill_trainer(pid: int) -> None:
    """SIGKILL a job's trainer and what shares its process group; its data-parallel ranks die
    with it (PDEATHSIG); then remove the grader sandboxes any of them started, which live in
    sessions of their own, and their cgroups. Ranks on other Ray nodes clean up with their actor."""
    trainers = [pid, *descendants(pid)]
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for trainer in trainers:
        remove_leftovers(trainer)


@dataclass
class Child:
    job_id: str
    process: subprocess.Popen
    run_dir: Path
    log: object
    signalled: bool = False


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _alive_child_of(pid: int | None, run_dir: Path) -> bool:
    """Whether `pid` is still the trainer of this run (not a recycled pid)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return str(run_dir) in cmdline


def last_error(log_path: Path) -> str:
    """The one-line reason the last attempt's `rftkit train` printed, else the end of its log.
    Under `--nproc` the launcher's closing line says which rank failed first and how; that rank's
    own reason (`rank K: ...`), when it printed one, comes first."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "the worker left no log"
    marks = [i for i, line in enumerate(lines) if line.startswith(ATTEMPT_MARK)]
    lines = lines[marks[-1] + 1:] if marks else lines
    reasons = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if reasons and RANKS_STOPPED in reasons[-1]:
        failed = reasons[-1].split(";")[0]  # "rank K of N exited with code C"
        own = [r for r in reasons[:-1] if r.startswith(f"{' '.join(failed.split()[:2])}: ")]
        return f"{own[-1]} ({failed})" if own else reasons[-1]
    return reasons[-1] if reasons else " | ".join(lines[-3:])[-2000:] or "the worker exited without a message"


class Supervisor:
    def __init__(self, store: Store, data_dir: Path, workers: int = 1, poll: float = 0.5,
                 python: str = sys.executable, grader_network: NetworkPolicy = NetworkPolicy(),
                 ray: str | None = None, nproc: int = 1):
        self.store, self.data_dir, self.workers, self.poll, self.python = store, data_dir, workers, poll, python
        self.ray = ray  # `rftkit serve --ray`: a cluster address, "local", or None (docs/scale.md)
        self.nproc = nproc  # `rftkit serve --nproc`: data-parallel ranks of each reinforcement job
        self.grader_network = grader_network  # handed to each trainer in its environment (graders/network.py)
        self.children: dict[str, Child] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()  # set once recovery is done

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="rftkit-supervisor", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        self.recover()
        self.ready.set()
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as err:  # noqa: BLE001 — a bad row must not stop every other job
                print(f"rftkit supervisor: {type(err).__name__}: {err}", file=sys.stderr)
            self._stop.wait(self.poll)
        self._shutdown()

    def stop(self, timeout: float = ORPHAN_WAIT_S) -> None:
        """Pause every running job with a checkpoint and requeue it for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _shutdown(self) -> None:
        for child in self.children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for job_id, child in list(self.children.items()):
            try:
                child.process.wait(ORPHAN_WAIT_S)
            except subprocess.TimeoutExpired:
                kill_trainer(child.process.pid)
                child.process.wait()
            self._ingest(self.store.job(job_id))
            child.log.close()
            code = child.process.returncode
            if code in (PAUSED_EXIT, -signal.SIGTERM, -signal.SIGKILL):
                self._try(job_id, "requeue", "The server stopped; the job resumes from its checkpoint when it "
                          "restarts", pid=None)
            else:  # it ended on its own meanwhile
                self._finished(self.store.job(job_id), code)
        self.children.clear()

    def recover(self) -> None:
        """Jobs left running by a server that died: wait out their trainers, keep what they
        wrote, and queue them again (paused ones stay paused)."""
        for job in self.store.jobs_with_status(ACTIVE):
            run_dir = Path(job["run_dir"])
            deadline = time.monotonic() + ORPHAN_WAIT_S
            while _alive_child_of(job["pid"], run_dir) and time.monotonic() < deadline:
                time.sleep(0.2)  # it got SIGTERM when the server died and is writing a checkpoint
            if _alive_child_of(job["pid"], run_dir):
                kill_trainer(job["pid"])  # its own group, started by this service
            self._ingest(job)
            summary = runs.read_json(run_dir / "summary.json") or {}
            if summary.get("status") == "succeeded" and (run_dir / "model").is_dir():
                self._succeed(self.store.job(job["id"]))
            else:
                self._try(job["id"], "requeue", "The server restarted; the job resumes from its last checkpoint",
                          pid=None)

    # ------------------------------------------------------------------ the loop

    def tick(self) -> None:
        for job in self.store.jobs_with_status(["validating_files"]):
            self._validate(job)
        for job_id in list(self.children):
            self._watch(job_id)
        for job in self.store.jobs_with_status(["queued"]):
            if len(self.children) >= self.workers:
                break
            self._launch(job)

    def _validate(self, job: dict) -> None:
        try:
            total_steps = validate_job(job, self.data_dir)
        except RftkitError as err:
            self._try(job["id"], "fail", f"Validation failed: {err}", level="error",
                      error={"code": "invalid_training_file", "message": str(err), "param": "training_file"})
            return
        except Exception as err:  # noqa: BLE001 — rftkit's own bug: fail this job, never retry it forever
            message = f"Validation failed on an internal error: {type(err).__name__}: {err}"
            self._try(job["id"], "fail", message, level="error",
                      error={"code": "internal_error", "message": message, "param": None})
            return
        self._try(job["id"], "validated", "Files validated, moving job to queued state", total_steps=total_steps)

    def _ingest(self, job: dict) -> None:
        path = Path(job["run_dir"]) / "events.jsonl"
        offset = job["events_offset"] or 0
        while True:
            rows, new_offset = runs.read_events(path, offset, job["total_steps"])
            if new_offset == offset:
                return
            steps = [r["step"] for r in rows if r["type"] == "metrics" and r["step"] is not None]
            self.store.ingest(job["id"], rows, new_offset,
                              **({"steps_done": max(steps)} if steps else {}))
            offset = new_offset

    def _watch(self, job_id: str) -> None:
        child = self.children[job_id]
        job = self.store.job(job_id)
        self._ingest(job)
        code = child.process.poll()
        if job["status"] == "cancelled":
            self._cancel(child)
        elif job["status"] == "pausing" and not child.signalled and code is None:
            child.process.send_signal(signal.SIGTERM)  # the trainer only, not its grader sandboxes
            child.signalled = True
        if code is not None or job["status"] == "cancelled":
            self._ingest(self.store.job(job_id))
            child.log.close()
            del self.children[job_id]
            if job["status"] != "cancelled":
                self._finished(self.store.job(job_id), code)

    def _cancel(self, child: Child) -> None:
        if child.process.poll() is None:
            kill_trainer(child.process.pid)
            child.process.wait()
        else:
            remove_leftovers(child.process.pid)
        for leftover in child.run_dir.glob(".tmp-checkpoint-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        self.store.update_job(child.job_id, pid=None)

    def _finished(self, job: dict, code: int) -> None:
        if code == 0:
            self._succeed(job)
        elif code == PAUSED_EXIT or code == -signal.SIGTERM:  # the latter: asked to pause before training began
            step = runs.newest_checkpoint(Path(job["run_dir"]))
            self._try(job["id"], "stopped", f"Job paused at step {step}; resume continues from checkpoint-{step}",
                      pid=None)
        else:
            reason = last_error(Path(job["run_dir"]).parent / "worker.log")
            self._try(job["id"], "fail", f"Job failed: {reason}", level="error", pid=None,
                      error={"code": "training_failed", "message": reason, "param": None})

    def _succeed(self, job: dict) -> None:
        """Mark the job succeeded, with its fine-tuned model and its result file."""
        result = self._results_file(job)
        if not self._try(job["id"], "succeed", "The job has successfully completed", pid=None,
                         fine_tuned_model=fine_tuned_name(job), steps_done=job["total_steps"] or job["steps_done"],
                         result_files=[result["id"]]):
            self.store.delete_file(job["project"], result["id"])
            Path(result["path"]).unlink(missing_ok=True)

    def _results_file(self, job: dict) -> dict:
        """OpenAI's result file: every step's metrics as CSV, a file of purpose fine-tune-results."""
        rows = self.store.metrics_rows(job["id"])
        file_id = new_id("file-")
        path = self.data_dir / "files" / f"{file_id}.csv"
        path.write_text(runs.metrics_csv(rows), encoding="utf-8")
        return self.store.add_file(job["project"], id=file_id, filename="step_metrics.csv", path=str(path),
                                   purpose="fine-tune-results", bytes=path.stat().st_size, kind=None, rows=len(rows))

    def _launch(self, job: dict) -> None:
        run_dir = Path(job["run_dir"])
        self._ingest(job)
        step = runs.newest_checkpoint(run_dir)
        if step is None:  # nothing to resume: start clean, and forget events of an earlier attempt
            shutil.rmtree(run_dir, ignore_errors=True)
            self.store.rewind_events(job["id"], None, 0)
        else:
            self.store.rewind_events(job["id"], step, runs.rewind_events_file(run_dir, step))
        message = "Fine-tuning job started" if step is None else f"Resuming from checkpoint-{step}"
        if not self._try(job["id"], "start", message, started_at=job["started_at"] or now(),
                         attempts=job["attempts"] + 1):
            return
        command = [self.python, "-m", "rftkit.cli", "train", str(run_dir.parent / "job.yaml"), "--out", str(run_dir)]
        plan = runs.read_json(run_dir.parent / PLAN_FILE) or {}
        command += trainer_arguments(job["spec"], self.ray, self.nproc, plan.get("batch_size"))
        log = (run_dir.parent / "worker.log").open("a", encoding="utf-8")
        log.write(f"{ATTEMPT_MARK} {job['attempts'] + 1}: {' '.join(command[2:])}\n")
        log.flush()
        process = subprocess.Popen(command + (["--resume"] if step is not None else []), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=_die_with_parent, env=self._worker_env())
        self.children[job["id"]] = Child(job["id"], process, run_dir, log)
        self.store.update_job(job["id"], pid=process.pid)

    def _worker_env(self) -> dict[str, str]:
        """The server's environment, plus the network rule its graders obey (a project's job)."""
        return {**os.environ, "PYTHONWARNINGS": "ignore", WORKER_ENV: self.grader_network.to_env()}

    def _try(self, job_id: str, action: str, message: str, **values) -> bool:
        """Apply a transition the worker makes; False when a user's action got there first."""
        try:
            self.store.change(job_id, action, message, **values)
            return True
        except JobConflict:
            return False
