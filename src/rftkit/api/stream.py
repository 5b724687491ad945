"""`stream: true` for /v1/chat/completions: OpenAI's server-sent events, token by token.

The inference worker sends each choice's new text as its tokens are sampled; a thread reads
the worker's whole reply into a queue (so a client that goes away never leaves the worker
half-read), and the response turns the queue into chunks: each choice opens with its role,
its text follows as it is written, a last chunk gives its finish_reason;
`stream_options.include_usage` adds a chunk with no choices and the usage; `data: [DONE]`
ends the stream. Errors found before the first token (an unknown model, a bad request) are
ordinary JSON errors; a failure after the stream began ends it with an error event.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import AsyncIterator, Iterator

from fastapi.concurrency import run_in_threadpool

from rftkit.errors import RftkitError
from rftkit.serving.client import WorkerFailed


def start(messages: Iterator[dict]) -> queue.Queue:
    """Read the worker's messages (deltas, then the final reply, or an error) into a queue."""
    out: queue.Queue = queue.Queue()

    def pump() -> None:
        try:
            for message in messages:
                out.put(message)
        except (RftkitError, WorkerFailed) as err:
            out.put(err)
        except Exception as err:  # noqa: BLE001 — a broken reply must end the stream, not hang it
            out.put(WorkerFailed(f"{type(err).__name__}: {err}"))

    threading.Thread(target=pump, name="chat-stream", daemon=True).start()
    return out


async def next_message(messages: queue.Queue) -> dict:
    """The next message; an error the worker reported is raised here."""
    message = await run_in_threadpool(messages.get)
    if isinstance(message, Exception):
        raise message
    return message


def _event(head: dict, choices: list[dict], usage: dict | None = None) -> str:
    chunk = {**head, "object": "chat.completion.chunk", "system_fingerprint": None, "choices": choices, "usage": usage}
    return f"data: {json.dumps(chunk)}\n\n"


def _choice(index: int, delta: dict, finish_reason: str | None = None) -> dict:
    return {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}


async def chat_events(head: dict, first: dict, messages: queue.Queue, include_usage: bool) -> AsyncIterator[str]:
    """The `data: ...` events of one streamed completion; `head` is {id, created, model}."""
    opened: set[int] = set()
    message = first
    try:
        while "delta" in message:
            index, content = message["delta"]["index"], message["delta"]["content"]
            if index not in opened:
                opened.add(index)
                yield _event(head, [_choice(index, {"role": "assistant", "content": ""})])
            yield _event(head, [_choice(index, {"content": content})])
            message = await next_message(messages)
    except (RftkitError, WorkerFailed) as err:
        yield f"data: {json.dumps({'error': {'message': str(err), 'type': 'server_error', 'code': None}})}\n\n"
        return
    for index, choice in enumerate(message["choices"]):
        if index not in opened:
            yield _event(head, [_choice(index, {"role": "assistant", "content": ""})])
        yield _event(head, [_choice(index, {}, choice["finish_reason"])])
    if include_usage:
        yield _event(head, [], usage(message))
    yield "data: [DONE]\n\n"


def usage(reply: dict) -> dict:
    return {"prompt_tokens": reply["prompt_tokens"], "completion_tokens": reply["completion_tokens"],
            "total_tokens": reply["prompt_tokens"] + reply["completion_tokens"]}
