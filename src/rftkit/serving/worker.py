"""`python -m rftkit.serving.worker`: answer chat requests, one JSON line in, one out.

A request with `"stream": true` is answered by `{"delta": {"index", "content"}}` lines as the
tokens are sampled, then the same final line. Replies go to the process's original stdout;
anything libraries print is sent to stderr so it cannot corrupt the protocol. The two most
recently used models stay loaded.
"""

from __future__ import annotations

import json
import os
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from rftkit.errors import RftkitError

MODELS_KEPT = 2


class Models:
    def __init__(self, kept: int = MODELS_KEPT):
        self.kept, self.loaded = kept, OrderedDict()

    def get(self, name: str):
        from rftkit.models.load import load_policy

        path = Path(name)
        key = (name, path.stat().st_mtime if path.exists() else 0.0)
        if key not in self.loaded:
            model, tokenizer = load_policy(name, "auto")
            model.eval()
            self.loaded[key] = (model, tokenizer)
            while len(self.loaded) > self.kept:
                self.loaded.popitem(last=False)
        self.loaded.move_to_end(key)
        return self.loaded[key]


class TextStream:
    """Each choice's text as its tokens arrive: what is new since the last call, held back
    while the tokens end inside a character that more bytes will complete."""

    def __init__(self, tokenizer, choices: int, stop_ids: set[int]):
        self.tokenizer, self.stop_ids = tokenizer, stop_ids
        self.ids: list[list[int]] = [[] for _ in range(choices)]
        self.sent = [""] * choices

    def add(self, rows: list[int], tokens: list[int]) -> list[tuple[int, str]]:
        pieces = []
        for row, token in zip(rows, tokens):
            if token in self.stop_ids:
                continue
            self.ids[row].append(token)
            text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True)
            if not text.endswith("\ufffd") and text.startswith(self.sent[row]) and len(text) > len(self.sent[row]):
                pieces.append((row, text[len(self.sent[row]):]))
                self.sent[row] = text
        return pieces

    def rest(self, row: int, final: str) -> str:
        """What the final text adds to what was sent (a held-back last character)."""
        return final[len(self.sent[row]):] if final.startswith(self.sent[row]) else ""


def answer(models: Models, request: dict, emit: Callable[[dict], None] | None = None) -> dict:
    import torch

    from rftkit.data.chat import render_prompt
    from rftkit.rollout.hf import SamplingParams, decode, generate, stop_token_ids

    model, tokenizer = models.get(request["model_path"])
    text = render_prompt(tokenizer, request["messages"], request.get("tools"))
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    params = SamplingParams(int(request.get("max_tokens") or 64), float(request.get("temperature", 1.0)),
                            float(request.get("top_p", 1.0)))
    device = next(model.parameters()).device
    generator = None
    if request.get("seed") is not None:
        generator = torch.Generator(device=device).manual_seed(int(request["seed"]))
    n, stops = int(request.get("n") or 1), stop_token_ids(model, tokenizer)
    stream = TextStream(tokenizer, n, stops) if request.get("stream") and emit else None

    def on_tokens(rows: list[int], tokens: list[int]) -> None:
        for row, piece in stream.add(rows, tokens):
            emit({"delta": {"index": row, "content": piece}})

    completions = generate(model, [prompt] * n, params, pad_id=tokenizer.pad_token_id, stop_ids=stops,
                           generator=generator, on_tokens=on_tokens if stream else None)
    texts = [decode(tokenizer, c) for c in completions]
    for row, final in enumerate(texts if stream else []):
        if rest := stream.rest(row, final):
            emit({"delta": {"index": row, "content": rest}})
    return {"choices": [{"text": t, "finish_reason": c.finish_reason} for t, c in zip(texts, completions)],
            "prompt_tokens": len(prompt), "completion_tokens": sum(len(c.token_ids) for c in completions)}


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries go to stderr
    sys.stdout = sys.stderr
    models = Models()
    emit = lambda message: replies.write(json.dumps(message) + "\n")  # noqa: E731
    for line in sys.stdin:
        try:
            reply = answer(models, json.loads(line), emit)
        except RftkitError as err:
            reply = {"error": str(err), "user_error": True}
        except Exception as err:  # noqa: BLE001 — reported to the server, which answers 500
            reply = {"error": f"{type(err).__name__}: {err}"}
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
