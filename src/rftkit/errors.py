"""The one exception type for problems a user can cause.

Bad data, a bad grader, a bad config or a missing file raise `RftkitError` with a message
that names where (file, line, field) and what to do about it. The CLI prints the message on
one line and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RftkitError(Exception):
    """A problem the user can fix. `str(err)` is the whole, human-readable reason."""

    def __init__(self, message: str, *, fix: str | None = None):
        self.reason = message
        self.fix = fix
        super().__init__(f"{message} — {fix}" if fix else message)


def where(source: str | None, line: int | None = None, field: str | None = None) -> str:
    """Format a location as `file:line: field` for error messages, leaving out unknown parts.

    >>> where("train.jsonl", 12, "messages[0].role")
    'train.jsonl:12: messages[0].role'
    >>> where("job.yaml", field="seed")
    'job.yaml: seed'
    """
    head = source or "<input>"
    if line is not None:
        head = f"{head}:{line}"
    return f"{head}: {field}" if field else head
