"""What a run directory (written by `rftkit train`) holds, read without torch.

events.jsonl is read incrementally from a byte offset, one whole line at a time (a line cut
short by a kill is left for later, or dropped on resume as the run itself drops it).
Metrics rows become OpenAI-shaped `metrics` events: scores, per-grader means, errors,
timing and usage, plus the flat row for charts.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from rftkit.train.runlog import truncate_after

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TIMING = ("time_",)
USAGE = ("samples_per_s", "tokens_per_s", "completion_length_mean", "completion_length_max", "groups_used")


def metrics_data(row: dict, total_steps: int | None = None) -> dict:
    """OpenAI's RFT metrics event `data` for one metrics.jsonl row.

    >>> d = metrics_data({"step": 2, "train_reward_mean": 0.5, "train_grader_exact_mean": 0.5,
    ...                   "train_grader_exact_error_rate": 0.0, "time_step": 1.5, "samples_per_s": 8.0})
    >>> d["scores"], d["errors"], d["timing"], d["usage"]["samples_per_s"]
    ({'train_reward_mean': 0.5, 'train_grader_exact_mean': 0.5}, {'train_grader_exact_error_rate': 0.0}, {'step': 1.5}, 8.0)
    """
    scores, errors, timing, usage = {}, {}, {}, {}
    for key, value in row.items():
        if key.startswith(TIMING):
            timing[key.removeprefix("time_")] = value
        elif key in USAGE:
            usage[key] = value
        elif key.endswith("_error_rate"):
            errors[key] = value
        elif "reward" in key or "_grader_" in key or "pass" in key:
            scores[key] = value
    return {"step": row.get("step"), "total_steps": total_steps, "scores": scores, "errors": errors,
            "timing": timing, "usage": usage, "metrics": row}


def metrics_message(row: dict, total_steps: int | None) -> str:
    parts = [f"Step {row.get('step')}" + (f"/{total_steps}" if total_steps else "")]
    for key in ("train_reward_mean", "valid_reward_mean"):
        if isinstance(row.get(key), (int, float)):
            parts.append(f"{key.split('_')[0]} reward={row[key]:.4f}")
    return ": ".join(parts[:1]) + (": " + ", ".join(parts[1:]) if parts[1:] else "")


def to_event(row: dict, total_steps: int | None) -> dict:
    """The store's event fields for one events.jsonl row."""
    event = {"created_at": int(row.get("created_at") or 0) or None, "level": row.get("level", "info"),
             "type": row.get("type", "message"), "message": str(row.get("message", "")), "step": row.get("step")}
    if event["level"] not in ("info", "warn", "error"):
        event["level"] = "info"
    if event["type"] == "metrics" and isinstance(row.get("data"), dict):
        event["data"] = metrics_data(row["data"], total_steps)
        event["message"] = metrics_message(row["data"], total_steps)
    elif row.get("data") is not None:
        event["data"] = row["data"]
    return event


def read_events(path: Path, offset: int, total_steps: int | None = None, most: int = 2000) -> tuple[list[dict], int]:
    """(events from the whole lines after `offset`, the offset after them)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read(1 << 22)
    except FileNotFoundError:
        return [], offset
    rows, used = [], 0
    for line in chunk.split(b"\n")[:-1]:  # the part after the last newline is not a whole line yet
        used += len(line) + 1
        try:
            rows.append(to_event(json.loads(line), total_steps))
        except ValueError:
            continue  # a line cut short by a kill, then appended to: skipped, as the run skips it
        if len(rows) >= most:
            break
    return rows, offset + used


def newest_checkpoint(run_dir: Path) -> int | None:
    """The step of the checkpoint `rftkit train --resume` will use (complete ones only)."""
    steps = [int(m.group(1)) for p in run_dir.glob("checkpoint-*")
             if (m := CHECKPOINT.match(p.name)) and (p / "manifest.json").exists()]
    return max(steps) if steps else None


def rewind_events_file(run_dir: Path, step: int) -> int:
    """Drop events after `step` from events.jsonl, as a resumed run does; the file's new size."""
    path = run_dir / "events.jsonl"
    truncate_after(path, step)
    return path.stat().st_size if path.exists() else 0


def checkpoints(run_dir: Path) -> list[dict]:
    """[{step, created_at, metrics, model_dir}] for the checkpoints on disk, newest first."""
    found = []
    for path in run_dir.glob("checkpoint-*"):
        match = CHECKPOINT.match(path.name)
        state_file = path / "state.json"
        if not match or not (path / "manifest.json").exists():
            continue
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = {}
        found.append({"step": int(match.group(1)), "created_at": int(state_file.stat().st_mtime),
                      "metrics": state.get("metrics") or {}, "model_dir": path / "model"})
    return sorted(found, key=lambda c: -c["step"])


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def samples(run_dir: Path, step: int | None, split: str | None, most: int = 500) -> list[dict]:
    """Rows of samples.jsonl, optionally for one step and split (the last `most` that match)."""
    path = run_dir / "samples.jsonl"
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if (step is None or row.get("step") == step) and (split is None or row.get("split") == split):
            found.append(row)
    return found[-most:]


def sample_steps(run_dir: Path) -> dict[str, list[int]]:
    """{split: [steps with samples]} for the sample viewer's pickers."""
    steps: dict[str, set[int]] = {}
    for row in samples(run_dir, None, None, most=10**9):
        steps.setdefault(row.get("split", "train"), set()).add(row.get("step") or 0)
    return {split: sorted(found) for split, found in steps.items()}


def estimate_finish(recent: list[dict], total_steps: int | None, at: int) -> int | None:
    """Unix seconds when a running job should finish: after its newest metrics row (written at
    `created_at`), the steps left at the mean `time_step` of `recent` rows; None without them.

    >>> estimate_finish([{"step": 3, "time_step": 2.0, "created_at": 100},
    ...                  {"step": 4, "time_step": 4.0, "created_at": 104}], 10, at=105)
    122
    >>> estimate_finish([], 10, at=105) is None
    True
    """
    times = [r["time_step"] for r in recent if isinstance(r.get("time_step"), (int, float))]
    if not times or not total_steps:
        return None
    newest = recent[-1]
    left = max(total_steps - int(newest.get("step") or 0), 0)
    return max(at, int(newest.get("created_at") or at) + round(left * sum(times) / len(times)))


def metrics_csv(rows: list[dict]) -> str:
    """Every step's metrics as CSV (OpenAI's step_metrics result file): `step` first, then
    every numeric metric any row has, in order of first appearance; blank where a step lacks one.

    >>> print(metrics_csv([{"step": 1, "train_reward_mean": 0.5, "note": "x"}, {"step": 2, "valid_reward_mean": 1}]), end="")
    step,train_reward_mean,valid_reward_mean
    1,0.5,
    2,,1
    """
    columns = ["step"]
    for row in rows:
        columns += [k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and k not in columns and k != "created_at"]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
