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

from typing import Any

from rftkit.types import Example

# <|bos|><|system|>...<|end|><|user|>...<|end|><|assistant|>...<|end|>
# Role markers and <|end|> are single special tokens; tools, when given, are listed as JSON in
# a system turn; an assistant's tool calls are written as JSON after its text.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if tools %}<|system|>Tools: {{ tools | tojson }}<|end|>{% endif %}"
    "{%- for m in messages %}<|{{ m['role'] }}|>{{ m['content'] or '' }}"
    "{%- if m.get('tool_calls') %}{{ m['tool_calls'] | tojson }}{% endif %}<|end|>{% endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>{% endif %}"
)

# For tokenizers that have no template: "Role: text" paragraphs, ending with "Assistant:".
PLAIN_CHAT_TEMPLATE = (
    "{%- if tools %}Tools: {{ tools | tojson }}\n\n{% endif %}"
    "{%- for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] or '' }}\n\n{% endfor %}"
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
