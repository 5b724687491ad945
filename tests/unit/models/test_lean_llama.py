"""The lean decoding forward computes what the model's own forward computes."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from rftkit.config import LoraOptions
from rftkit.models.lean_llama import LeanWeights
from rftkit.models.load import wrap_lora
from rftkit.models.tiny import build_tiny
from rftkit.rollout.fast_decode import DecodeState
from rftkit.rollout.hf import SamplingParams, generate, left_pad

PROMPTS = [[5, 9, 13, 40], [7, 8], [60, 61, 62, 63, 64, 65], [7, 8]]


def small(config_class, model_class, **overrides):
    torch.manual_seed(0)
    config = config_class(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, **overrides)
    model = model_class(config).eval()
    with torch.no_grad():  # biases start at zero; make them count
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.5)
    return model


def lora_model():
    model = wrap_lora(build_tiny("tiny", seed=0)[0], LoraOptions(enabled=True, r=4, alpha=8))
    with torch.no_grad():  # a fresh adapter's B is zero; make it change the output
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    return model.eval()


MODELS = {
    "tiny llama": lambda: build_tiny("tiny", seed=0)[0].eval(),
    "llama, grouped-query attention and biases": lambda: small(LlamaConfig, LlamaForCausalLM, attention_bias=True),
    "qwen2": lambda: small(Qwen2Config, Qwen2ForCausalLM),
    "tiny llama with LoRA": lora_model,
}


ONE_TOKEN_PROMPTS = [[5], [9], [13], [40]]  # a prefill of one query takes the decoding path


@pytest.mark.parametrize("prompts", [PROMPTS, ONE_TOKEN_PROMPTS], ids=["prompts", "one-token prompts"])
@pytest.mark.parametrize("name", MODELS)
def test_prefill_and_steps_match_the_models_forward(name, prompts):
    model = MODELS[name]()
    weights = LeanWeights.of(model)
    assert weights is not None
    ids, mask, positions = left_pad(prompts, 0, torch.device("cpu"))
    state = DecodeState(weights, len(prompts), ids.shape[1] + 3, torch.float32, torch.device("cpu"))
    lean = [state.prefill(ids, mask, positions)]
    state.select(torch.tensor([0, 1, 2, 3]))
    next_ids, next_position = torch.tensor([11, 12, 13, 14]), positions[:, -1] + 1
    for _ in range(3):
        lean.append(state.step(next_ids, next_position))
        ids, mask = torch.cat([ids, next_ids[:, None]], 1), torch.cat([mask, torch.ones(4, 1, dtype=mask.dtype)], 1)
        positions = torch.cat([positions, next_position[:, None]], 1)
        next_ids, next_position = next_ids + 1, next_position + 1
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    P = len(lean) - 1
    for offset, logits in enumerate(lean):
        assert torch.allclose(logits, full[:, -1 - P + offset], atol=2e-5), offset


@pytest.mark.parametrize("name", ["tiny llama", "tiny llama with LoRA"])
def test_generate_samples_the_same_tokens_either_way(name):
    model = MODELS[name]()
    prompts = [p for p in PROMPTS for _ in range(3)]
    params = SamplingParams(16, temperature=1.0)
    runs = [generate(model, prompts, params, pad_id=0, stop_ids={3, 30, 31, 32}, lean=lean,
                     generator=torch.Generator().manual_seed(4)) for lean in (LeanWeights.of(model), None)]
    assert [c.token_ids for c in runs[0]] == [c.token_ids for c in runs[1]]
    assert {c.finish_reason for c in runs[0]} == {"stop", "length"}  # rows left the batch early
    for fast, slow in zip(*runs):
        assert fast.logprobs == pytest.approx(slow.logprobs, abs=1e-5)


def test_other_architectures_use_their_own_forward():
    scaled = small(LlamaConfig, LlamaForCausalLM, rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                                   "rope_theta": 10000.0})
    assert LeanWeights.of(scaled) is None
    from transformers import GPT2Config, GPT2LMHeadModel

    assert LeanWeights.of(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))) is None


def test_large_models_and_dora_use_their_own_forward(monkeypatch):
    from peft import LoraConfig, get_peft_model

    import rftkit.rollout.fast_decode as fast_decode

    model = build_tiny("tiny", seed=0)[0]
    assert fast_decode.decode_weights(model) is not None
    monkeypatch.setattr(fast_decode, "MAX_PARAMETERS", 1_000_000)  # the tiny model has 1.1M
    assert fast_decode.decode_weights(model) is None
    dora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj"]))
    assert LeanWeights.of(dora) is None


def test_a_bf16_model_with_its_fp32_adapter_decodes_in_bf16():
    """rftkit.precision bf16 with LoRA: PEFT keeps the adapter in fp32 over the bf16 weights;
    the lean forward decodes with the merged weight in bf16, as the model's own forward does."""
    model = lora_model().bfloat16()
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            parameter.data = parameter.data.float()
    ids, mask, positions = left_pad(PROMPTS, 0, torch.device("cpu"))
    state = DecodeState(LeanWeights.of(model), len(PROMPTS), ids.shape[1] + 1, torch.bfloat16, torch.device("cpu"))
    lean = state.prefill(ids, mask, positions)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
    assert lean.dtype == torch.bfloat16
    assert (lean.float() - full.float()).abs().max() < 0.05 * full.float().abs().max()  # bf16 rounds in either order
    assert torch.equal(lean.argmax(-1), full.argmax(-1))
