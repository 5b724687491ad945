"""A multi-turn conversation as token ids, segment by segment, in the chat template's own words.

An episode and a tool transcript both alternate between turns the model writes and text put in
around them (tool results, a user's reply, role markers). Both are laid out the same way:

    prompt ids | assistant ids (trained) | observation ids (not) | assistant ids (trained) | ...

- the *prompt* is the conversation up to the first assistant turn, with the generation prompt;
- an *observation* is the template's text from the end of one assistant turn to the opening of
  the next: `render(history + new, generation prompt)` minus `render(history)`, plus whatever the
  template writes after the end-of-turn token (Qwen's newline after `<|im_end|>`);
- an *assistant* segment is what the model writes: its text and tool calls, up to and including
  the end-of-turn token.

During an episode the assistant segments are the ids the engine sampled, never re-encoded; only
observations are encoded, on their own. Supervised training on a transcript encodes the assistant
turns with the same template, so what SFT teaches is what an episode samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rftkit.errors import RftkitError


def render(tokenizer: Any, messages: list[dict], tools: list | None, *, generation: bool, **template_kwargs) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools or None, add_generation_prompt=generation,
                                         tokenize=False, **template_kwargs)


def encode_text(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _delta(before: str, after: str, what: str) -> str:
    if not after.startswith(before):
        raise RftkitError(
            f"the chat template renders the conversation differently once {what} is added, so its "
            "turns cannot be laid out token by token",
            fix="use a template that only appends to a conversation (most do; some rewrite earlier "
                "assistant turns, e.g. dropping their reasoning)")
    return after[len(before):]


def observation_ids(tokenizer: Any, history: list[dict], new: list[dict], tools: list | None,
                    **template_kwargs) -> list[int]:
    """Token ids the template puts between the last assistant turn of `history` (which ended with
    the end-of-turn token) and the opening of the next assistant turn, `new` messages included."""
    before = render(tokenizer, history, tools, generation=False, **template_kwargs)
    after = render(tokenizer, history + new, tools, generation=True, **template_kwargs)
    text = _delta(before, after, "a tool result or reply")
    eos = tokenizer.eos_token or ""
    if eos and before.rfind(eos) >= 0:  # what the template writes after the end-of-turn token
        text = before[before.rfind(eos) + len(eos):] + text
    return encode_text(tokenizer, text)


@dataclass(frozen=True)
class Segment:
    """A stretch of a conversation's ids after the prompt: `trained` when the model writes it."""

    role: str
    ids: list[int]
    trained: bool


def conversation_segments(tokenizer: Any, messages: list[dict], tools: list | None,
                          **template_kwargs) -> tuple[list[int], list[Segment]]:
    """(prompt ids, segments) of a whole conversation, as a transcript is trained on: every
    assistant turn (tool-call turns included) is trained, up to its end-of-turn token; tool
    results, later user turns and template tokens are not."""
    first = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), len(messages))
    prompt = encode_text(tokenizer, render(tokenizer, messages[:first], tools, generation=True, **template_kwargs))
    turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    segments: list[Segment] = []
    for i, following in zip(turns, [*turns[1:], None]):
        opened = render(tokenizer, messages[:i], tools, generation=True, **template_kwargs)
        closed = render(tokenizer, messages[: i + 1], tools, generation=False, **template_kwargs)
        ids = encode_text(tokenizer, _delta(opened, closed, f"message {i}"))
        end = ids.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in ids else len(ids)
        segments.append(Segment("assistant", ids[:end], True))
        if following is not None:  # what stands between this turn and the next: tool results, replies
            between = messages[i + 1: following]
            observation = observation_ids(tokenizer, messages[: i + 1], between, tools, **template_kwargs)
            segments.append(Segment(between[0]["role"] if between else "template", observation, False))
    return prompt, segments
