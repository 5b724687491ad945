import hashlib

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from rftkit.errors import RftkitError
from rftkit.models.load import load_policy
from rftkit.models.tiny import build_tiny, parameter_count


def weights_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def test_same_seed_same_weights_other_seed_other_weights():
    a, _ = build_tiny("tiny", seed=7)
    b, _ = build_tiny("tiny", seed=7)
    c, _ = build_tiny("tiny", seed=8)
    assert weights_digest(a) == weights_digest(b) != weights_digest(c)


def test_building_does_not_disturb_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny("tiny", seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("size, low, high", [("tiny", 0.8e6, 1.5e6), ("small", 4.5e6, 7.5e6)])
def test_sizes(size, low, high):
    model, tokenizer = build_tiny(size)
    assert isinstance(model, LlamaForCausalLM)
    assert low <= parameter_count(model) <= high
    assert model.config.vocab_size == len(tokenizer)


def test_unknown_size_is_a_user_error():
    with pytest.raises(RftkitError, match="unknown model size 'huge'"):
        build_tiny("huge")


def test_saved_directory_loads_offline_with_auto_classes(tiny_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    original, _ = build_tiny("tiny", seed=0)
    assert weights_digest(model) == weights_digest(original)
    ids = torch.tensor([tokenizer("12+3=", add_special_tokens=False)["input_ids"]])
    assert model(ids).logits.shape == (1, 5, len(tokenizer))


def test_load_policy_gives_fp32_and_optionally_lora(tiny_dir):
    from rftkit.config import LoraOptions

    model, tokenizer = load_policy(str(tiny_dir), "cpu")
    assert next(model.parameters()).dtype == torch.float32
    assert tokenizer.pad_token_id is not None
    wrapped, _ = load_policy(str(tiny_dir), "cpu", LoraOptions(enabled=True, r=4))
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(RftkitError, match="cannot load model"):
        load_policy(str(tmp_path / "nope"), "cpu")
