"""Built-in tasks: datasets rftkit can write anywhere, so `rftkit demo` needs no files.

`addition`: "37+48=" -> "7+8=15 3+4+1=8 =85". The model shows its work digit by digit,
from the ones up, carrying as it goes, and ends with the sum after a last "=". Only that
final number is graded (`addition_reward`), so reinforcement is free to make the work
reliable in whatever way earns reward.

Why this task for the demo: a tiny model learns the format and most single-digit facts
from a few hundred labelled rows in well under a minute, but at temperature 1 a slip in
any of ~18 sampled tokens spoils the answer. So after a short warm start the model has
real but imperfect competence — pass@1 far below pass@8 — which is exactly where
reinforcement pays: it learns from its own correct samples, no further labels needed.
(Answering "85" directly asks a 1M-parameter model to carry in its head, which it learns
too slowly for a demo.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# The demo's grader: rftkit's `function` grader runs this trusted callable in-process.
ADDITION_GRADER = {"type": "function", "name": "final answer", "function": "rftkit.data.builtin:addition_reward"}


def addition_work(a: int, b: int) -> str:
    """The worked answer: each column's sum from the ones up, with its carry, then the total.

    >>> addition_work(37, 48)
    '7+8=15 3+4+1=8 =85'
    >>> addition_work(5, 17)
    '5+7=12 0+1+1=2 =22'
    """
    columns = max(len(str(a)), len(str(b)))
    steps, carry = [], 0
    for column in range(columns):
        x, y = a // 10**column % 10, b // 10**column % 10
        total = x + y + carry
        steps.append(f"{x}+{y}={total}" if column == 0 else f"{x}+{y}+{carry}={total}")
        carry = total // 10
    return " ".join(steps) + f" ={a + b}"


def final_answer(completion: str) -> str:
    """What follows the last "=", stripped: the number a worked answer ends with.

    >>> final_answer("7+8=15 3+4+1=8 =85")
    '85'
    """
    return completion.rsplit("=", 1)[-1].strip()


def addition_reward(prompt, completion: str, item: dict) -> float:
    """1.0 when the completion's final answer is the sum, else 0.0 (the work is not graded).

    >>> addition_reward([], "7+8=15 3+4+1=8 =85", {"answer": "85"})
    1.0
    >>> addition_reward([], "7+8=15 3+4+0=7 =75", {"answer": "85"})
    0.0
    """
    return float(final_answer(completion) == item["answer"])


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
        messages.append({"role": "assistant", "content": addition_work(a, b)})
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
    - sft.jsonl: labelled rows (a final assistant turn with the worked answer) for a warm start;
    - sft_valid.jsonl: the held-out prompts with their worked answers, for supervised exact-match.
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


def demo_job(model: str, data: Path, grader: dict, *, steps: int, seed: int, train_rows: int, validations: int,
             warmup_steps: int, max_prompt_tokens: int, max_completion_tokens: int) -> dict:
    """A demo's reinforcement job on DATA/train.jsonl and valid.jsonl (OpenAI's job body plus the
    rftkit block): 32 prompts x 8 samples a step, enough passes over `train_rows` for `steps`,
    about `validations` validation passes."""
    return {
        "model": model,
        "training_file": str(data / "train.jsonl"),
        "validation_file": str(data / "valid.jsonl"),
        "seed": seed,
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": grader,
            "hyperparameters": {"batch_size": 32, "n_epochs": -(-steps * 32 // train_rows),
                                "eval_interval": max(1, steps // validations)},
        }},
        "rftkit": {
            "algorithm": "grpo",
            "group_size": 8,
            "learning_rate": 1e-4,
            "max_steps": steps,
            # four optimizer steps per sampled batch: more learning per (costly) generation
            "update": {"mini_batches": 4},
            "optimizer": {"warmup_steps": warmup_steps},
            "lengths": {"max_prompt_tokens": max_prompt_tokens, "max_completion_tokens": max_completion_tokens},
            "eval": {"k": 8},
            "checkpoints": {"keep_last": 1, "keep_best": 0},
        },
    }


def addition_job(model: str, data: Path, *, steps: int, seed: int = 0) -> dict:
    """The addition demo's reinforcement job."""
    return demo_job(model, data, ADDITION_GRADER, steps=steps, seed=seed, train_rows=1000, validations=10,
                    warmup_steps=10, max_prompt_tokens=32, max_completion_tokens=24)