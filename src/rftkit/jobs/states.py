"""The job state machine.

OpenAI's statuses (validating_files -> queued -> running -> succeeded | failed | cancelled)
plus `pausing` (asked to pause; the worker is writing a checkpoint) and `paused`. Every change
of status goes through `transition`, which names the action and refuses an impossible one:

>>> transition("running", "pause")
'pausing'
>>> transition("paused", "resume")
'queued'
>>> transition("succeeded", "cancel")
Traceback (most recent call last):
...
rftkit.jobs.states.JobConflict: cannot cancel a job that is succeeded
"""

from __future__ import annotations

from typing import Literal, get_args

from rftkit.errors import RftkitError

Status = Literal["validating_files", "queued", "running", "pausing", "paused", "succeeded", "failed", "cancelled"]
STATUSES: tuple[str, ...] = get_args(Status)
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE = frozenset({"running", "pausing"})  # a worker process holds the job

# action -> {status it applies to: status it leads to}
TRANSITIONS: dict[str, dict[str, str]] = {
    # asked for by users
    "cancel": {s: "cancelled" for s in ("validating_files", "queued", "running", "pausing", "paused")},
    "pause": {"queued": "paused", "running": "pausing"},
    "resume": {"paused": "queued"},
    # made by the supervisor
    "validated": {"validating_files": "queued"},
    "start": {"queued": "running"},
    "stopped": {"running": "paused", "pausing": "paused"},  # the worker exited with a checkpoint
    "succeed": {"running": "succeeded", "pausing": "succeeded"},
    "fail": {"validating_files": "failed", "queued": "failed", "running": "failed", "pausing": "failed"},
    "requeue": {"running": "queued", "pausing": "paused"},  # recovery after a crash of the server
}


class JobConflict(RftkitError):
    """An action that the job's status does not allow (HTTP 409)."""


def transition(status: str, action: str) -> str:
    """The status that `action` leads to from `status`; JobConflict when it cannot apply."""
    allowed = TRANSITIONS[action]
    if status not in allowed:
        raise JobConflict(f"cannot {action} a job that is {status}")
    return allowed[status]


def sources(action: str) -> tuple[str, ...]:
    """The statuses `action` applies to (for an atomic `UPDATE ... WHERE status IN`)."""
    return tuple(TRANSITIONS[action])
