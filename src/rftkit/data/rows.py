"""Reading raw rows from JSONL, parquet or a saved Hugging Face dataset.

Every reader yields `RawRow(line, value, error)`: the 1-based line (JSONL) or row number
(parquet, HF datasets), the decoded row, or why it could not be decoded. Null values are
dropped from objects in every format: Arrow fills a missing key with null, so dropping them
makes the three formats agree on what a row holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rftkit.errors import RftkitError


@dataclass(frozen=True)
class RawRow:
    line: int
    value: Any = None
    error: str | None = None


def drop_nulls(value: Any) -> Any:
    """Remove null-valued keys from every object, recursively.

    >>> drop_nulls({"a": 1, "b": None, "c": [{"d": None, "e": 2}]})
    {'a': 1, 'c': [{'e': 2}]}
    """
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def dataset_kind(path: Path) -> str:
    """'jsonl', 'parquet' or 'hf' (a directory written by `datasets.save_to_disk`)."""
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return "hf"
        raise RftkitError(
            f"{path}: a directory, but not a saved Hugging Face dataset",
            fix="pass a .jsonl or .parquet file, or a folder written by datasets' save_to_disk",
        )
    if path.suffix == ".parquet":
        return "parquet"
    return "jsonl"


def read_rows(path: str | Path) -> Iterator[RawRow]:
    """Yield the rows of a dataset file, whatever its format."""
    path = Path(path)
    if not path.exists():
        raise RftkitError(f"{path}: no such file or directory")
    kind = dataset_kind(path)
    if kind == "jsonl":
        yield from _read_jsonl(path)
    elif kind == "parquet":
        yield from _rows_of(_read_parquet(path))
    else:
        yield from _rows_of(_read_hf(path))


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield RawRow(number, error=f"not valid UTF-8 (byte {err.start})")
                continue
            if not text.strip():
                continue
            try:
                yield RawRow(number, drop_nulls(json.loads(text)))
            except json.JSONDecodeError as err:
                yield RawRow(number, error=f"invalid JSON: {err.msg} at column {err.colno}")


def _rows_of(records: list[dict]) -> Iterator[RawRow]:
    for number, record in enumerate(records, start=1):
        yield RawRow(number, drop_nulls(record))


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise RftkitError(f"{path}: cannot read parquet: {err}") from None


def _read_hf(path: Path) -> list[dict]:
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if len(loaded) != 1:
            names = ", ".join(loaded)
            raise RftkitError(
                f"{path}: holds several splits ({names})",
                fix=f"point to one of them, e.g. {path / next(iter(loaded))}",
            )
        loaded = next(iter(loaded.values()))
    return loaded.to_list()
