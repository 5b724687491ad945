"""Writes the tools example's data: 3-digit multiplications, which a 1M-parameter model cannot
do in its head, but can with the calculator.

- sft.jsonl: 400 tool transcripts (OpenAI's format): the question, a `mul` call, its result, the answer;
- train.jsonl: 400 questions with an `answer` field, no transcripts;
- valid.jsonl: 100 held-out questions, disjoint from both.

    python examples/tools/make_data.py
"""

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from calculator import Calculator  # noqa: E402

from rftkit.rollout.env import ToolEnv, ToolLimits  # noqa: E402

TOOLS = ToolEnv(Calculator(), ToolLimits()).tools  # the schemas the episodes show the model


def question(a: int, b: int) -> dict:
    return {"role": "user", "content": f"{a}*{b}="}


def transcript(a: int, b: int, index: int) -> dict:
    call = {"id": f"call_{index}", "type": "function",
            "function": {"name": "mul", "arguments": json.dumps({"a": a, "b": b})}}
    return {"messages": [question(a, b), {"role": "assistant", "content": "", "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": call["id"], "content": str(a * b)},
                         {"role": "assistant", "content": str(a * b)}],
            "tools": TOOLS}


def main() -> None:
    rng = random.Random(0)
    pairs = list(dict.fromkeys((rng.randint(100, 999), rng.randint(100, 999)) for _ in range(1000)))
    sft, train, valid = pairs[:400], pairs[400:800], pairs[800:900]
    files = {
        "sft.jsonl": [transcript(a, b, i) for i, (a, b) in enumerate(sft)],
        "train.jsonl": [{"messages": [question(a, b)], "answer": str(a * b)} for a, b in train],
        "valid.jsonl": [{"messages": [question(a, b)], "answer": str(a * b)} for a, b in valid],
    }
    for name, rows in files.items():
        (HERE / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
