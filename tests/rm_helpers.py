"""Feedback and a small trained reward model, shared by the feedback and grader tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

GOOD, BAD = "thank you", "damn"


def polite_feedback(items: int, seed: int = 0) -> list[dict]:
    """Feedback lines where the reviewer always prefers the polite answer to the rude one,
    rates tone 5 vs 1 and flags the rude one unsafe; answer order is shuffled."""
    rng = random.Random(seed)
    lines = []
    for i in range(items):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        good, bad = f"{a + b} {GOOD}", f"{a + b} {BAD}"
        answers = [good, bad] if rng.random() < 0.5 else [bad, good]
        lines.append({"item_id": f"q{i}", "prompt": f"{a}+{b}=", "answers": answers, "reviewer": "bot",
                      "preferred": answers.index(good), "ratings": [{"tone": 5 if x == good else 1} for x in answers],
                      "unsafe": [x == bad for x in answers]})
    return lines


def write_feedback(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def train_polite_rm(out: Path, base: Path, *, seed: int = 0, items: int = 48, epochs: int = 4) -> dict:
    """A reward model trained on `polite_feedback` (about 10 s on two cores)."""
    from rftkit.feedback.records import read_feedback_jsonl
    from rftkit.feedback.training import RMOptions, train_reward_model

    records = read_feedback_jsonl(write_feedback(out.parent / f"{out.name}.jsonl", polite_feedback(items, seed)))
    options = RMOptions(epochs=epochs, learning_rate=1e-3, batch_size=8, seed=seed, device="cpu", holdout=0.34)
    return train_reward_model(records, str(base), out, options, log=lambda message: None)
