"""A saved reward model's description (reward_model.json), readable without torch.

The grader checks a spec's criteria against the heads listed here when it is built, so a
misspelt criterion fails before any model is loaded (and the API server validates graders
without importing torch).
"""

from __future__ import annotations

import json
from pathlib import Path

from rftkit.errors import RftkitError

FORMAT = "rftkit-reward-model"
META_FILE = "reward_model.json"


def read_meta(path: str | Path) -> dict:
    """reward_model.json of a saved reward model, or RftkitError saying what is wrong."""
    meta_file = Path(path) / META_FILE
    try:
        meta = json.loads(meta_file.read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise RftkitError(f"{path}: not a reward model directory (no {META_FILE})",
                          fix="train one with `rftkit rm train`") from None
    except json.JSONDecodeError as err:
        raise RftkitError(f"{meta_file}:{err.lineno}: invalid JSON: {err.msg}") from None
    if meta.get("format") != FORMAT or not isinstance(meta.get("heads"), list):
        raise RftkitError(f"{meta_file}: not an rftkit reward model (format {meta.get('format')!r})")
    return meta
