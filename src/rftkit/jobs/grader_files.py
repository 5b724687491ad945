"""The files a grader may open over the API: the rule of `graders/paths.py` for one project.

`for_project` returns a copy of a grader spec whose file fields (`sql_execution.database`,
`reward_model.path`) name absolute paths the project may read: its own uploads of purpose
`user_data` (by file id), or files under a directory the operator shares with every project
(`rftkit serve --grader-dir`), never anything else inside the service's data directory. The
same function serves `graders/run`, `graders/validate` and job creation, so one rule holds.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rftkit.errors import RftkitError
from rftkit.graders.paths import file_fields, no_parent_steps
from rftkit.jobs.store import NotFound, Store

USER_DATA = "user_data"
UPLOAD_FIX = "upload the file with purpose user_data and name its id (file-...)"


def for_project(grader: Any, store: Store, project: str, data_dir: Path, shared: Sequence[Path] = (),
                where: str = "grader") -> Any:
    """`grader` with every file it names resolved for `project`, or RftkitError naming the field
    (`where` is the grader's place in the request)."""
    spec = copy.deepcopy(grader)
    for node, field, where in file_fields(spec, where):
        value = node[field]
        if isinstance(value, list):
            node[field] = [_resolve(v, f"{where}[{i}]", store, project, data_dir, shared) for i, v in enumerate(value)]
        else:
            node[field] = _resolve(value, where, store, project, data_dir, shared)
    return spec


def _resolve(value: Any, where: str, store: Store, project: str, data_dir: Path, shared: Sequence[Path]) -> Any:
    if not isinstance(value, str):
        return value  # the grader's own validation names the type error
    if value.startswith("file-"):
        try:
            row = store.file(project, value)
        except NotFound:
            raise RftkitError(f"{where}: no file {value!r} in this project", fix=UPLOAD_FIX) from None
        if row["purpose"] != USER_DATA:
            raise RftkitError(f"{where}: {value} ({row['filename']}) is a {row['purpose']} file", fix=UPLOAD_FIX)
        return row["path"]
    path = no_parent_steps(value, where)
    if path.is_absolute():
        raise RftkitError(f"{where}: absolute paths are refused over the API", fix=UPLOAD_FIX)
    private = data_dir.resolve()
    for root in (Path(r).resolve() for r in shared):
        candidate = (root / path).resolve()  # symlinks followed: a link cannot lead out of the root
        if candidate.is_relative_to(root) and not candidate.is_relative_to(private) and candidate.exists():
            return str(candidate)
    shared_fix = " or place it under a directory shared with `rftkit serve --grader-dir`"
    raise RftkitError(f"{where}: {value!r} is not a file this project may open", fix=UPLOAD_FIX + shared_fix)
