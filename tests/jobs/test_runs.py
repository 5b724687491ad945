"""Reading a run directory while the trainer writes it."""

from __future__ import annotations

import json

from rftkit.jobs.runs import newest_checkpoint, read_events, rewind_events_file


def test_events_are_read_one_whole_line_at_a_time(tmp_path):
    path = tmp_path / "events.jsonl"
    whole = json.dumps({"message": "metrics", "type": "metrics", "step": 1, "data": {"step": 1, "train_reward_mean": 0.5}})
    path.write_text(whole + "\n" + '{"message": "half a li')
    rows, offset = read_events(path, 0, total_steps=10)
    assert len(rows) == 1 and offset == len(whole) + 1
    assert rows[0]["message"] == "Step 1/10: train reward=0.5000" and rows[0]["data"]["scores"] == {"train_reward_mean": 0.5}
    assert read_events(path, offset) == ([], offset)  # the half line waits
    with path.open("a") as handle:
        handle.write('ne", "step": 2}\n')
    rows, end = read_events(path, offset)
    assert [r["message"] for r in rows] == ["half a line"] and end == path.stat().st_size


def test_rewind_keeps_what_a_resume_from_that_checkpoint_keeps(tmp_path):
    lines = [{"message": "resumed", "step": None}] + [{"message": f"s{s}", "step": s} for s in (1, 2, 3)]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"cut')
    size = rewind_events_file(tmp_path, 2)
    kept = [json.loads(line)["message"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert kept == ["resumed", "s1", "s2"] and size == (tmp_path / "events.jsonl").stat().st_size


def test_only_complete_checkpoints_count(tmp_path):
    assert newest_checkpoint(tmp_path) is None
    for step, complete in ((3, True), (5, True), (7, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "manifest.json").write_text("{}")
    (tmp_path / ".tmp-checkpoint-9-1").mkdir()
    assert newest_checkpoint(tmp_path) == 5
