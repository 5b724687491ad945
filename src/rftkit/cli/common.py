"""What every command shares: the console, JSON files read with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from rftkit.errors import RftkitError
from rftkit.monitor.console import console

out = console  # progress and logs go to stderr; results meant for pipes go to stdout


def read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RftkitError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise RftkitError(f"{path}:{err.lineno}: invalid JSON in the {what}: {err.msg}") from None
