"""The growing files of a run directory: metrics.jsonl, samples.jsonl and events.jsonl.

Every row carries its step. On resume, rows written after the checkpoint being resumed are
dropped first, so the steps that are run again appear exactly once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rftkit.monitor.sinks import open_sinks
from rftkit.types import Group


def truncate_after(path: Path, step: int) -> None:
    """Keep only rows of a JSONL file whose `step` is at most `step` (rows without one stay)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if row.get("step") is None or row["step"] <= step:
            kept.append(line)
    path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def episode_fields(sample) -> dict:
    """What a multi-turn episode adds to its samples.jsonl row: the conversation turn by turn
    (prompt included), every tool call with its result, and why it stopped."""
    if not sample.messages:
        return {}
    return {"messages": sample.messages, "tool_calls": sample.output_tools, "stop_reason": sample.stop_reason}


def group_rows(step: int, split: str, groups: list[Group]) -> list[dict]:
    rows = []
    for group in groups:
        for index, (sample, grade) in enumerate(zip(group.samples, group.grades)):
            errors = [k for k, v in grade.metadata.get("errors", {}).items() if v is True]
            rows.append(episode_fields(sample) | {
                "step": step,
                "split": split,
                "line": group.example.line,
                "prompt": group.example.prompt_messages,
                "sample": index,
                "completion": sample.output_text,
                "finish_reason": sample.finish_reason,
                "reward": grade.reward,
                "sub_rewards": grade.sub_rewards,
                "errors": errors,
            })
    return rows


class RunLog:
    def __init__(self, out: Path, sinks: list[str], resume_step: int | None = None):
        self.out = out
        if resume_step is not None:
            for name in ("metrics.jsonl", "samples.jsonl", "events.jsonl"):
                truncate_after(out / name, resume_step)
        self.sinks = open_sinks(out, sinks)
        self.samples_file = (out / "samples.jsonl").open("a", encoding="utf-8")
        self.events_file = (out / "events.jsonl").open("a", encoding="utf-8")

    def metrics(self, row: dict) -> None:
        for sink in self.sinks:
            sink.write(row)
        self.event("metrics", step=row["step"], kind="metrics", data=row)

    def samples(self, step: int, split: str, groups: list[Group]) -> None:
        for row in group_rows(step, split, groups):
            self.samples_file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.samples_file.flush()

    def event(self, message: str, *, level: str = "info", step: int | None = None, kind: str = "message",
              data: dict | None = None) -> None:
        row = {"created_at": int(time.time()), "level": level, "message": message, "type": kind, "step": step}
        if data is not None:
            row["data"] = data
        self.events_file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.events_file.flush()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.samples_file.close()
        self.events_file.close()


class NullRunLog(RunLog):
    """The run log of a data-parallel rank other than 0: rank 0 writes the run directory."""

    def __init__(self, *args, **kwargs):
        self.sinks = []

    def metrics(self, row: dict) -> None:
        pass

    def samples(self, step: int, split: str, groups: list[Group]) -> None:
        pass

    def event(self, message: str, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass
