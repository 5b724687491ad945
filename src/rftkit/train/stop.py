"""A request to stop a run after its current step: from SIGTERM / SIGINT, or from a caller."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Set by SIGTERM / SIGINT (or by a caller): pause after the current step, with a checkpoint."""

    def __init__(self):
        self.reason: str | None = None
        self._previous: dict = {}

    def request(self, reason: str) -> None:
        self.reason = self.reason or reason

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.request(f"signal {signal.Signals(signum).name}")

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
