"""The addmm LoRA layer computes what PEFT's own layer computes, and is PEFT's in every other way."""

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import Linear as LoraLinear

from rftkit.config import LoraOptions
from rftkit.models.load import resume_lora, wrap_lora
from rftkit.models.lora import AddmmLoraLinear, use_addmm_layers
from rftkit.models.tiny import build_tiny


def pair(**options):
    """(rftkit's wrapped model, PEFT's stock model), same weights, adapters made non-trivial."""
    lora = LoraOptions(enabled=True, r=4, alpha=8, **options)
    ours = wrap_lora(build_tiny("tiny", seed=0)[0], lora)
    stock = get_peft_model(build_tiny("tiny", seed=0)[0], LoraConfig(
        r=4, lora_alpha=8, lora_dropout=lora.dropout, target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for (name, a), (other, b) in zip(ours.named_parameters(), stock.named_parameters(), strict=True):
            assert name == other
            if "lora_B" in name:
                a.normal_(0, 0.05)
            b.copy_(a)
    return ours, stock


def addmm_calls(monkeypatch) -> list:
    """A list that grows by one for every torch.addmm call (the call itself still runs)."""
    calls, real = [], torch.addmm

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "addmm", counting)
    return calls


def loss_and_grads(model, ids, seed=0):
    model.zero_grad()
    torch.manual_seed(seed)
    loss = model(input_ids=ids).logits.square().mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_wrap_lora_swaps_every_linear_adapter():
    ours, stock = pair()
    layers = [m for m in ours.modules() if isinstance(m, LoraLinear)]
    assert layers and all(type(m) is AddmmLoraLinear for m in layers)
    assert not any(type(m) is AddmmLoraLinear for m in stock.modules())


def assert_same_training(ours, stock, ids):
    loss_ours, grads_ours = loss_and_grads(ours, ids)
    loss_stock, grads_stock = loss_and_grads(stock, ids)
    torch.testing.assert_close(loss_ours, loss_stock, rtol=1e-6, atol=1e-7)
    assert grads_ours.keys() == grads_stock.keys()
    for name in grads_ours:
        torch.testing.assert_close(grads_ours[name], grads_stock[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_loss_and_gradients_match_peft(dropout, monkeypatch):
    ours, stock = pair(dropout=dropout)
    ours.train()
    stock.train()
    calls = addmm_calls(monkeypatch)
    assert_same_training(ours, stock, torch.randint(3, 200, (3, 11)))
    assert calls  # the addmm path ran


def stock_with(**config):
    model = get_peft_model(build_tiny("tiny", seed=0)[0], LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM", **config))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name or "lora_magnitude" in name:
                parameter.normal_(0, 0.05)
    return model


def two_adapters():
    model = stock_with()
    model.add_adapter("second", LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B.second" in name:
                parameter.normal_(0, 0.05)
    model.base_model.set_adapter(["default", "second"])
    return model


FALLBACKS = {
    "DoRA": lambda: stock_with(use_dora=True),
    "a bias on B": lambda: stock_with(lora_bias=True),
    "two active adapters": two_adapters,
}


@pytest.mark.parametrize("name", FALLBACKS)
def test_other_adapters_take_peft_forward_and_match_it(name, monkeypatch):
    stock = FALLBACKS[name]()
    ours = use_addmm_layers(copy.deepcopy(stock))
    assert any(type(m) is AddmmLoraLinear for m in ours.modules())
    calls = addmm_calls(monkeypatch)
    assert_same_training(ours, stock, torch.randint(3, 200, (2, 9)))
    assert not calls


def test_a_resumed_adapter_gets_the_addmm_layers(tmp_path):
    ours, _ = pair()
    ours.save_pretrained(tmp_path / "adapter")
    resumed = resume_lora(build_tiny("tiny", seed=0)[0], tmp_path / "adapter")
    layers = [m for m in resumed.modules() if isinstance(m, LoraLinear)]
    assert layers and all(type(m) is AddmmLoraLinear for m in layers)
    assert any(p.requires_grad for n, p in resumed.named_parameters() if "lora_" in n)


def test_disabled_merged_and_other_dtypes_take_peft_forward():
    ours, stock = pair()
    ids = torch.randint(3, 200, (2, 7))
    with torch.no_grad():
        with ours.disable_adapter():
            base = ours(input_ids=ids).logits
        adapted = ours(input_ids=ids).logits
        with stock.disable_adapter():
            stock_base = stock(input_ids=ids).logits
        assert (adapted - base).abs().max() > 1e-3  # the adapter counts, and disabling removes it
        torch.testing.assert_close(base, stock_base)
        torch.testing.assert_close(adapted, stock(input_ids=ids).logits)
        layer = next(m for m in ours.modules() if type(m) is AddmmLoraLinear)
        x = torch.randn(2, 7, layer.in_features, dtype=torch.float64)
        assert layer._plain_adapter(x, (), {}) is None
        layer.merge()
        assert layer._plain_adapter(x.float(), (), {}) is None
        layer.unmerge()
        assert layer._plain_adapter(x.float(), (), {}) == "default"


def test_saved_adapter_loads_into_stock_peft(tmp_path):
    ours, _ = pair()
    ids = torch.randint(3, 200, (2, 7))
    ours.save_pretrained(tmp_path / "adapter")
    loaded = PeftModel.from_pretrained(build_tiny("tiny", seed=0)[0], str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, ours.eval()(input_ids=ids).logits)
        merged = ours.merge_and_unload()
        torch.testing.assert_close(merged(input_ids=ids).logits, loaded(input_ids=ids).logits, rtol=1e-5, atol=1e-5)
