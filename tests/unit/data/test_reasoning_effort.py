"""`hyperparameters.reasoning_effort` reaches the chat template of every prompt a job renders."""

import pytest

from rftkit.config import parse_job
from rftkit.data.chat import TINY_CHAT_TEMPLATE, encode_prompt, render_prompt
from rftkit.graders import build_grader
from rftkit.models.tiny import build_tiny
from rftkit.resolved import resolve_reinforcement
from rftkit.train.rl import RLTrainer
from rftkit.types import Example

# The part of gpt-oss's template that reads the variable (its system turn says "Reasoning: LEVEL").
GPT_OSS_STYLE = (
    "<|start|>system<|message|>Reasoning: {{ reasoning_effort | default('medium') }}<|end|>"
    "{%- for m in messages %}<|start|>{{ m['role'] }}<|message|>{{ m['content'] }}<|end|>{% endfor %}"
    "{%- if add_generation_prompt %}<|start|>assistant{% endif %}"
)
EXAMPLE = Example([{"role": "user", "content": "2+2?"}], {})


def job(effort=None):
    hyperparameters = {"batch_size": 1} | ({"reasoning_effort": effort} if effort else {})
    return parse_job({"model": "m", "training_file": "t.jsonl", "method": {"type": "reinforcement", "reinforcement": {
        "grader": {"type": "string_check", "name": "g", "input": "{{ sample.output_text }}", "reference": "4",
                   "operation": "eq"}, "hyperparameters": hyperparameters}}})


@pytest.fixture
def tokenizer():
    _, tokenizer = build_tiny("tiny", seed=0)
    tokenizer.chat_template = GPT_OSS_STYLE
    return tokenizer


def test_reasoning_effort_changes_the_rendered_prompt(tokenizer):
    default = resolve_reinforcement(job(), rows=1, parameters=None).chat_template_vars
    high = resolve_reinforcement(job("high"), rows=1, parameters=None).chat_template_vars
    assert "Reasoning: medium" in render_prompt(tokenizer, EXAMPLE.prompt_messages, **default)
    assert "Reasoning: high" in render_prompt(tokenizer, EXAMPLE.prompt_messages, **high)
    assert "Reasoning: low" in render_prompt(tokenizer, EXAMPLE.prompt_messages,
                                             **resolve_reinforcement(job("low"), rows=1, parameters=None).chat_template_vars)


def test_training_prompts_carry_the_effort(tokenizer):
    model, _ = build_tiny("tiny", seed=0)
    grader = build_grader(job().method.reinforcement.grader)
    settings = resolve_reinforcement(job("high"), rows=1, parameters=None)
    trainer = RLTrainer(model, tokenizer, grader, [EXAMPLE], settings)
    assert tokenizer.decode(trainer.prompt_ids(0)) == render_prompt(tokenizer, EXAMPLE.prompt_messages,
                                                                    reasoning_effort="high")
    assert "Reasoning: high" in tokenizer.decode(trainer.prompt_ids(0))


def test_tiny_template_ignores_the_effort():
    """rftkit's own tiny models are not reasoning models: their template renders the same prompt."""
    _, tokenizer = build_tiny("tiny", seed=0)
    assert tokenizer.chat_template == TINY_CHAT_TEMPLATE
    high = resolve_reinforcement(job("high"), rows=1, parameters=None).chat_template_vars
    assert encode_prompt(tokenizer, EXAMPLE, **high) == encode_prompt(tokenizer, EXAMPLE)
