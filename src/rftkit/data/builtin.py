"""Built-in tasks: datasets rftkit can write anywhere, so `rftkit demo` needs no files.

`addition`: "37+48=" -> "85". Short prompts, a verifiable answer, and a difficulty dial
(the number of digits) make it a task where a tiny model trained for minutes on a CPU has
real but imperfect skill, which is where reinforcement pays.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ADDITION_GRADER = {
    "type": "string_check",
    "name": "exact answer",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}


def addition_pairs(count: int, digits: int, rng: random.Random, exclude: set) -> list[tuple[int, int]]:
    """`count` distinct (a, b) pairs of `digits`-digit numbers, none of them in `exclude`."""
    low, high = 10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1
    if (high - low + 1) ** 2 - len(exclude) < count:
        raise ValueError(f"only {(high - low + 1) ** 2} distinct {digits}-digit pairs exist")
    pairs: list[tuple[int, int]] = []
    seen = set(exclude)
    while len(pairs) < count:
        pair = (rng.randint(low, high), rng.randint(low, high))
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    return pairs


def addition_row(a: int, b: int, *, with_answer_turn: bool) -> dict:
    messages = [{"role": "user", "content": f"{a}+{b}="}]
    if with_answer_turn:
        messages.append({"role": "assistant", "content": str(a + b)})
    return {"messages": messages, "answer": str(a + b)}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_addition(
    out: str | Path, *, digits: int = 2, train: int = 1000, valid: int = 200, sft: int = 500, seed: int = 0
) -> dict[str, Path]:
    """Write the addition task's files into `out`.

    - train.jsonl: RL prompts (last turn from the user) with an `answer` field for graders;
    - valid.jsonl: held-out RL prompts, disjoint from every other file;
    - sft.jsonl: labelled rows (a final assistant turn) for a supervised warm start;
    - sft_valid.jsonl: the held-out prompts with their answers, for supervised exact-match.
    """
    out = Path(out)
    rng = random.Random(seed)
    held_out = addition_pairs(valid, digits, rng, set())
    train_pairs = addition_pairs(train, digits, rng, set(held_out))
    sft_pairs = addition_pairs(sft, digits, rng, set(held_out))
    return {
        "train": write_jsonl(out / "train.jsonl", [addition_row(a, b, with_answer_turn=False) for a, b in train_pairs]),
        "valid": write_jsonl(out / "valid.jsonl", [addition_row(a, b, with_answer_turn=False) for a, b in held_out]),
        "sft": write_jsonl(out / "sft.jsonl", [addition_row(a, b, with_answer_turn=True) for a, b in sft_pairs]),
        "sft_valid": write_jsonl(
            out / "sft_valid.jsonl", [addition_row(a, b, with_answer_turn=True) for a, b in held_out]
        ),
    }
