"""The auto learning rate: what it picks for the tiny and small presets and for a model shaped
like Qwen2.5-0.5B, full fine-tuning and LoRA, reinforcement and supervised (docs/auto.md)."""

from __future__ import annotations

import pytest
from transformers import Qwen2Config

from rftkit.config import parse_job
from rftkit.models.load import parameter_count_of, save_policy
from rftkit.models.tiny import build_tiny
from rftkit.resolved import auto_learning_rate, resolve_reinforcement, resolve_supervised


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Directories the rule reads its sizes from: two presets with weights, and a 0.5B config alone."""
    root = tmp_path_factory.mktemp("models")
    dirs = {size: str(save_policy(*build_tiny(size), root / size)) for size in ("tiny", "small")}
    Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True).save_pretrained(root / "qwen")
    dirs["0.5B"] = str(root / "qwen")
    return dirs


def job(model: str, *, lora: bool, method: str = "reinforcement", **rftkit) -> dict:
    body = {"model": model, "training_file": "t.jsonl", "method": {"type": method},
            "rftkit": {"lora": {"enabled": lora}, **rftkit}}
    if method == "reinforcement":
        body["method"]["reinforcement"] = {"grader": {"type": "string_check", "input": "a", "reference": "a",
                                                      "operation": "eq"}}
    return body


def test_sizes_are_counted_from_the_config_alone(models):
    assert parameter_count_of(models["tiny"]) == pytest.approx(1.1e6, rel=0.05)
    assert parameter_count_of(models["small"]) == pytest.approx(6.0e6, rel=0.05)
    assert parameter_count_of(models["0.5B"]) == pytest.approx(494e6, rel=0.01)  # no weights on disk
    assert parameter_count_of("no/such-model-anywhere") is None


@pytest.mark.parametrize(("size", "full", "lora"), [
    ("tiny", 3.0e-5, 3.0e-4),   # 1e-4 lowered held-out reward from a warm start (bench/auto_defaults.py sweep)
    ("small", 1.4e-5, 1.4e-4),
    ("0.5B", 1.9e-6, 1.9e-5),   # published GRPO recipes for 0.5-1.5B models: 1e-6 to 3e-6
])
def test_the_reinforcement_rate_falls_with_size_and_rises_for_lora(models, size, full, lora):
    parameters = parameter_count_of(models[size])
    for enabled, expected in ((False, full), (True, lora)):
        resolved = resolve_reinforcement(parse_job(job(models[size], lora=enabled)), 12, parameters=parameters)
        assert resolved.learning_rate == pytest.approx(expected, rel=0.02)
        assert ("x10 for a LoRA adapter" in resolved.reasons["learning_rate"]) == enabled


def test_supervised_steps_take_ten_times_the_rate(models):
    tiny = parameter_count_of(models["tiny"])
    resolved = resolve_supervised(parse_job(job(models["tiny"], lora=False, method="supervised")), 40, parameters=tiny)
    assert resolved.learning_rate == pytest.approx(3e-4)  # 1e-3 and 3e-3 broke a warm-started tiny model
    lora = resolve_supervised(parse_job(job(models["tiny"], lora=True, method="supervised")), 40, parameters=tiny)
    assert lora.learning_rate == pytest.approx(3e-3)
    half_b = parameter_count_of(models["0.5B"])
    full = resolve_supervised(parse_job(job(models["0.5B"], lora=False, method="supervised")), 40, parameters=half_b)
    assert full.learning_rate == pytest.approx(1.9e-5)  # SFT recipes for 0.5B models: 1e-5 to 2e-5


def test_floor_unknown_size_and_explicit_values():
    assert auto_learning_rate(70_000_000_000, lora=False, supervised=False)[0] == 1e-6
    assert auto_learning_rate(70_000_000_000, lora=False, supervised=True)[0] == 1e-5
    assert auto_learning_rate(10_000, lora=False, supervised=False)[0] == 3e-5  # never above the anchor
    rate, why = auto_learning_rate(None, lora=False, supervised=False)
    assert rate == 1e-6 and "could not be read" in why
    explicit = resolve_reinforcement(parse_job(job("m", lora=False, learning_rate=5e-5)), 12, parameters=1_100_000)
    assert explicit.learning_rate == 5e-5 and "learning_rate" not in explicit.reasons
    body = job("m", lora=False)
    body["method"]["reinforcement"]["hyperparameters"] = {"learning_rate_multiplier": 2}
    doubled = resolve_reinforcement(parse_job(body), 12, parameters=1_100_000)
    assert doubled.learning_rate == pytest.approx(6e-5) and "x2 (learning_rate_multiplier)" in doubled.reasons["learning_rate"]
