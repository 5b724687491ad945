"""Chat templates: how a conversation becomes the token ids a model reads.

A tokenizer with its own chat template (any instruct model) uses it. rftkit's tiny
byte-level models carry `TINY_CHAT_TEMPLATE`, and a tokenizer without any template (a base
model) is given `PLAIN_CHAT_TEMPLATE`. Both are documented in docs/chat-templates.md.

A prompt is the conversation rendered with the generation prompt (the opening of the
assistant turn); a completion is the assistant's text followed by the end-of-turn token.
Supervised targets and RL samples use exactly this split, so what SFT teaches is what
sampling produces.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from rftkit.types import Example

# <|bos|><|system|>...<|end|><|user|>...<|end|><|assistant|>...<|end|>
# Role markers and <|end|> are single special tokens. Tools, when given, are listed compactly in a
# system turn (`Tools: name(arg, arg) name(arg)`: one byte is one token for the tiny models, and a
# full JSON schema would be most of the prompt); an assistant's tool calls follow its text in the
# Hermes format that `parse_tool_calls` reads.
_TOOLS_LINE = (
    "Tools:{% for t in tools %}{% set f = t.function or t %} {{ f.name }}("
    "{{ ((f.parameters or {}).properties or {}) | list | join(', ') }}){% endfor %}"
)
_TOOL_CALLS = (
    "{%- for c in m.get('tool_calls') or [] %}{% set f = c.function or c %}"
    '<tool_call>{"name": {{ f.name | tojson }}, "arguments": '
    "{% if f.arguments is string %}{{ f.arguments }}{% else %}{{ (f.arguments or {}) | tojson }}{% endif %}"
    "}</tool_call>{% endfor %}"
)
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if tools %}<|system|>" + _TOOLS_LINE + "<|end|>{% endif %}"
    "{%- for m in messages %}<|{{ m['role'] }}|>{{ m['content'] or '' }}" + _TOOL_CALLS + "<|end|>{% endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>{% endif %}"
)

# For tokenizers that have no template: "Role: text" paragraphs, ending with "Assistant:".
PLAIN_CHAT_TEMPLATE = (
    "{%- if tools %}" + _TOOLS_LINE + "\n\n{% endif %}"
    "{%- for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] or '' }}" + _TOOL_CALLS + "\n\n{% endfor %}"
    "{%- if add_generation_prompt %}Assistant:{% endif %}"
)


def ensure_chat_template(tokenizer: Any) -> None:
    """Give a tokenizer without a chat template the plain one, so every model can chat."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE


def reasoning_template_vars(effort: str) -> dict[str, Any]:
    """The chat-template variables that carry `hyperparameters.reasoning_effort`.

    "default" adds nothing, so the template's own default applies. Any other level is passed as
    `reasoning_effort`, the variable that gpt-oss-style templates read ("Reasoning: high" in the
    system turn). Templates that do not read it (Qwen3's reads only `enable_thinking`, rftkit's
    tiny and plain templates read neither) render the same prompt.

    >>> reasoning_template_vars("default")
    {}
    >>> reasoning_template_vars("high")
    {'reasoning_effort': 'high'}
    """
    return {} if effort == "default" else {"reasoning_effort": effort}


def render_prompt(tokenizer: Any, messages: list[dict], tools: list | None = None, **template_kwargs: Any) -> str:
    """The prompt text: the conversation plus the opening of the assistant's turn."""
    return tokenizer.apply_chat_template(
        messages, tools=tools or None, add_generation_prompt=True, tokenize=False, **template_kwargs
    )


def encode_prompt(tokenizer: Any, example: Example, **template_kwargs: Any) -> list[int]:
    """Token ids of an example's prompt (the conversation before any final assistant turn)."""
    text = render_prompt(tokenizer, example.prompt_messages, example.tools, **template_kwargs)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_completion(tokenizer: Any, text: str) -> list[int]:
    """Token ids of an assistant answer, closed by the end-of-turn (eos) token."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


# ----------------------------------------------------------------------------- tool calls

TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class AssistantTurn:
    """What a model turn said: its text without tool calls, the calls in OpenAI's `tool_calls`
    shape, and why they could not be read (`parse_error`), if so."""

    content: str
    tool_calls: list[dict[str, Any]]
    parse_error: str | None = None

    def message(self) -> dict[str, Any]:
        """The turn as an OpenAI assistant message."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message


def parse_tool_calls(text: str, call_prefix: str = "call") -> AssistantTurn:
    """Read tool calls written in the Hermes format (rftkit's tiny template, Qwen 2.5/3, Hermes):
    `<tool_call>{"name": NAME, "arguments": {...}}</tool_call>`, one per call, after any text.

    >>> turn = parse_tool_calls('Let me see.<tool_call>{"name": "mul", "arguments": {"a": 2}}</tool_call>')
    >>> turn.content, turn.tool_calls[0]["function"]
    ('Let me see.', {'name': 'mul', 'arguments': '{"a": 2}'})
    >>> parse_tool_calls('<tool_call>{"name": "mul"</tool_call>').parse_error
    "tool call 1: invalid JSON: Expecting ',' delimiter at column 15"
    """
    calls, problem = [], None
    for index, match in enumerate(TOOL_CALL.finditer(text)):
        call, problem = _read_call(match.group(1).strip(), index + 1)
        if problem is not None:
            break
        calls.append({"id": f"{call_prefix}_{index}", "type": "function", "function": call})
    content = TOOL_CALL.sub("", text)
    if problem is None and "<tool_call>" in content:
        problem = "a <tool_call> is not closed by </tool_call>"
    return AssistantTurn(content.strip(), calls if problem is None else [], problem)


def _read_call(body: str, number: int) -> tuple[dict[str, Any], str | None]:
    try:
        call = json.loads(body)
    except ValueError as err:
        return {}, f"tool call {number}: invalid JSON: {err.msg} at column {err.colno}"
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return {}, f'tool call {number}: expected {{"name": ..., "arguments": {{...}}}}'
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return {}, f"tool call {number}: arguments are not valid JSON"
    if not isinstance(arguments, dict):
        return {}, f"tool call {number}: arguments must be a JSON object"
    return {"name": call["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}, None
