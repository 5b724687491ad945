"""The files a grader spec names, and the one rule that says where they are.

Two graders open files: `sql_execution` (`database`, a SQLite file) and `reward_model` (`path`,
one or more reward-model directories). Everywhere, a relative path never climbs out with `..`.

- Under `rftkit train`, `rftkit grade` and the other commands (the operator's own jobs), a
  relative path starts at the job's or the grader file's folder; absolute paths are allowed.
- Over the API (`graders/run`, `graders/validate`, jobs created with POST /v1/fine_tuning/jobs),
  a grader may name only what belongs to the caller's project or what the operator shares: an
  uploaded file's id (`file-...`, see docs/service.md), or a path relative to a directory the
  operator allows (`rftkit serve --grader-dir DIR`). Absolute paths are refused, and nothing
  inside the service's data directory is opened but the project's own uploads.
  `jobs.grader_files.for_project` applies this rule and writes the paths it found into the spec.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rftkit.errors import RftkitError

FILE_FIELDS: dict[str, str] = {"sql_execution": "database", "reward_model": "path"}


def file_fields(spec: Any, where: str = "grader") -> Iterator[tuple[dict, str, str]]:
    """(the grader's spec, its field that names files, where it is) for every grader in `spec`,
    nested ones (multi) included."""
    if isinstance(spec, dict):
        field = FILE_FIELDS.get(spec.get("type"))
        if field is not None and field in spec:
            yield spec, field, f"{where}.{field}"
        for key, value in spec.items():
            yield from file_fields(value, f"{where}.{key}")
    elif isinstance(spec, list):
        for index, value in enumerate(spec):
            yield from file_fields(value, f"{where}[{index}]")


def no_parent_steps(value: str, where: str) -> Path:
    path = Path(value)
    if ".." in path.parts:
        raise RftkitError(f"{where}: {value!r} climbs out of its folder with '..'",
                          fix="name the file from the folder it is in, or by an absolute path (command line only)")
    return path


def local_path(value: str, base_dir: Path, where: str) -> Path:
    """A file a grader names, under the command line's rule: relative to `base_dir`, never through `..`."""
    path = no_parent_steps(value, where)
    return path if path.is_absolute() else Path(base_dir) / path
