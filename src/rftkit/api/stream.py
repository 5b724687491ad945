"""`stream: true` for /v1/chat/completions: a finished completion as OpenAI's server-sent events.

The inference worker generates a whole completion before it answers, so the stream carries
text that already exists: each choice opens with its role, its text follows a word at a time,
and a last chunk gives its finish_reason; `stream_options.include_usage` adds a chunk with
no choices and the usage; `data: [DONE]` ends the stream. Clients read it as they read
OpenAI's (the openai client's `stream=True` iterates over the chunks).
"""

from __future__ import annotations

import json
import re
from typing import Iterator

PIECE = re.compile(r"\S+\s*|\s+")


def pieces(text: str) -> list[str]:
    """The text a word at a time, spaces kept, so the pieces join back to the text.

    >>> pieces(" two words\\n")
    [' ', 'two ', 'words\\n']
    """
    return PIECE.findall(text)


def _event(completion: dict, choices: list[dict], usage: dict | None = None) -> str:
    chunk = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
             "model": completion["model"], "system_fingerprint": None, "choices": choices, "usage": usage}
    return f"data: {json.dumps(chunk)}\n\n"


def _choice(index: int, delta: dict, finish_reason: str | None = None) -> dict:
    return {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}


def completion_events(completion: dict, include_usage: bool = False) -> Iterator[str]:
    """The `data: ...` events of a `chat.completion` object, ending with `data: [DONE]`."""
    for choice in completion["choices"]:
        index = choice["index"]
        yield _event(completion, [_choice(index, {"role": "assistant", "content": ""})])
        for piece in pieces(choice["message"]["content"]):
            yield _event(completion, [_choice(index, {"content": piece})])
        yield _event(completion, [_choice(index, {}, choice["finish_reason"])])
    if include_usage:
        yield _event(completion, [], completion["usage"])
    yield "data: [DONE]\n\n"
