"""`python -m rftkit.serving.worker`: answer sampling requests, one JSON line in, one out.

A request names a model and either chat `messages` (rendered with the model's chat template)
or `prompts`, lists of token ids (for `/v1/completions`); each prompt is sampled `n` times
through the same engine training uses. The reply holds, per choice, the text, the sampled
token ids and their log-probs, and the finish reason. A request with `"stream": true` is
answered by `{"delta": {"index", "content"}}` lines as the tokens are sampled, then the same
final line. Replies go to the process's original stdout;
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
        """(tokenizer, engine) of the model at `name`, loaded once (again when its folder changes)."""
        from rftkit.models.load import load_policy
        from rftkit.rollout.engine import local_engine

        path = Path(name)
        key = (name, path.stat().st_mtime if path.exists() else 0.0)
        if key not in self.loaded:
            model, tokenizer = load_policy(name, "auto")
            model.eval()
            self.loaded[key] = (tokenizer, local_engine(model, tokenizer))
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


def _prompts(tokenizer, request: dict) -> list[list[int]]:
    from rftkit.data.chat import render_prompt

    if request.get("texts") is not None:
        return [tokenizer(text)["input_ids"] for text in request["texts"]]
    if request.get("prompts") is not None:
        vocabulary = len(tokenizer)
        for index, prompt in enumerate(request["prompts"]):
            if not prompt or any(not 0 <= token < vocabulary for token in prompt):
                raise RftkitError(f"prompt[{index}]: token ids must be 0..{vocabulary - 1}, and at least one")
        return [list(p) for p in request["prompts"]]
    text = render_prompt(tokenizer, request["messages"], request.get("tools"))
    return [tokenizer(text, add_special_tokens=False)["input_ids"]]


def answer(models: Models, request: dict, emit: Callable[[dict], None] | None = None) -> dict:
    import torch

    from rftkit.rollout.hf import decode
    from rftkit.types import SamplingParams

    tokenizer, engine = models.get(request["model_path"])
    prompts = _prompts(tokenizer, request)
    params = SamplingParams(int(request.get("max_tokens") or 64), float(request.get("temperature", 1.0)),
                            float(request.get("top_p", 1.0)), int(request.get("top_k") or 0))
    generator = None
    if request.get("seed") is not None:  # on the CPU whatever the device: one seed, the same draws
        generator = torch.Generator().manual_seed(int(request["seed"]))
    n = int(request.get("n") or 1)
    stream = TextStream(tokenizer, n * len(prompts), engine.stop_ids) if request.get("stream") and emit else None

    def on_tokens(rows: list[int], tokens: list[int]) -> None:
        for row, piece in stream.add(rows, tokens):
            emit({"delta": {"index": row, "content": piece}})

    completions = [c for drawn in engine.generate(prompts, params, n=n, generator=generator,
                                                  on_tokens=on_tokens if stream else None) for c in drawn]
    texts = [decode(tokenizer, c.token_ids) for c in completions]
    for row, final in enumerate(texts if stream else []):
        if rest := stream.rest(row, final):
            emit({"delta": {"index": row, "content": rest}})
    choices = [{"text": t, "finish_reason": c.finish_reason, "token_ids": c.token_ids, "logprobs": c.logprobs,
                "tokens": [tokenizer.decode([token]) for token in c.token_ids]}
               for t, c in zip(texts, completions)]
    return {"choices": choices, "prompt_ids": prompts, "prompt_tokens": sum(len(p) for p in prompts),
            "completion_tokens": sum(len(c.token_ids) for c in completions)}


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
