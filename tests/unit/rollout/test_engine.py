"""The engine seam: the registry, the in-process engines, and clear errors for the others."""

import json

import pytest
import torch

from rftkit.config import EngineOptions, LoraOptions, parse_job
from rftkit.errors import RftkitError
from rftkit.models.tiny import build_tiny
from rftkit.rollout.engine import ENGINES, EngineContext, build_engine, engine_names
from rftkit.types import SamplingParams

MODEL, TOKENIZER = build_tiny("tiny", seed=2)
PROMPTS = [TOKENIZER(text, add_special_tokens=False)["input_ids"] for text in ("12+3=", "7+8=", "100+1=")]


def engine(name, model=MODEL, **options):
    return build_engine(name, EngineContext(model, TOKENIZER, "tiny", EngineOptions(**options) if options else None))


def test_every_documented_engine_is_registered():
    assert engine_names() == ["auto", "hf", "lean", "openai", "vllm"]
    assert {name: cls.exact_logprobs for name, cls in ENGINES.items()} == {
        "hf": True, "lean": True, "openai": False, "vllm": False}
    assert engine("auto").name == "lean"  # a tiny Llama on the CPU


def test_hf_and_lean_sample_identical_tokens_for_one_seed():
    params = SamplingParams(16, temperature=1.0)
    runs = [engine(name).generate(PROMPTS, params, n=4, generator=torch.Generator().manual_seed(9))
            for name in ("hf", "lean")]
    assert [len(drawn) for drawn in runs[0]] == [4, 4, 4]
    assert [[c.token_ids for c in drawn] for drawn in runs[0]] == [[c.token_ids for c in drawn] for drawn in runs[1]]
    for hf, lean in zip(sum(runs[0], []), sum(runs[1], [])):
        assert hf.logprobs == pytest.approx(lean.logprobs, abs=1e-5)
        assert hf.finish_reason == lean.finish_reason


def test_completions_carry_the_policy_version_of_the_weights_that_sampled_them():
    hf = engine("hf")
    hf.update_weights(MODEL, 7)
    (drawn,) = hf.generate(PROMPTS[:1], SamplingParams(4, temperature=0.0))
    assert drawn[0].policy_version == 7


def test_lean_refuses_an_architecture_it_cannot_decode():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300))
    with pytest.raises(RftkitError, match="lean decodes Llama-family models.*use engine: hf"):
        engine("lean", gpt2)
    assert engine("auto", gpt2).name == "hf"


def test_unknown_engines_are_refused_by_the_job_spec_and_the_registry():
    body = {"model": "m", "training_file": "t", "method": {"type": "supervised"}, "rftkit": {"engine": "vlm"}}
    with pytest.raises(RftkitError, match="rftkit.engine"):
        parse_job(body)
    with pytest.raises(RftkitError, match="unknown engine 'vlm'.*auto, hf, lean, openai, vllm"):
        engine("vlm")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where there is no GPU")
def test_vllm_without_a_gpu_says_so():
    with pytest.raises(RftkitError, match="vllm runs on a CUDA GPU, and none is visible"):
        engine("vllm")


def test_vllm_starts_from_what_it_can_load(tmp_path):
    """The settings vllm.LLM gets, checkable without vLLM: a LoRA export starts vLLM from its
    base, the adapter's rank is raised to one vLLM accepts, and the job's lengths bound the context."""
    from rftkit.rollout.vllm_engine import llm_settings

    adapter = tmp_path / "model"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/base"}))
    policy = torch.nn.Linear(2, 2).bfloat16()
    lora = LoraOptions(enabled=True, r=4)
    settings = llm_settings(EngineContext(policy, None, str(adapter), EngineOptions(), lora=lora, max_length=96))
    assert (settings["model"], settings["tokenizer"], settings["dtype"]) == ("/models/base", "/models/base", "bfloat16")
    assert (settings["max_lora_rank"], settings["max_model_len"]) == (8, 96)
    told = EngineOptions(max_model_len=64)
    assert llm_settings(EngineContext(policy, None, str(tmp_path), told, max_length=96))["max_model_len"] == 64
    assert "enable_lora" not in llm_settings(EngineContext(policy, None, str(tmp_path)))
    with pytest.raises(RftkitError, match="rank 600 is above vLLM's largest"):
        llm_settings(EngineContext(policy, None, "m", lora=LoraOptions(enabled=True, r=600)))
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(RftkitError, match="does not name its base model"):
        llm_settings(EngineContext(policy, None, str(adapter)))


def test_openai_needs_a_base_url_and_its_key():
    with pytest.raises(RftkitError, match="engine_options.base_url"):
        engine("openai")
    with pytest.raises(RftkitError, match=r"\$RFTKIT_TEST_UNSET_KEY is not set"):
        engine("openai", base_url="http://127.0.0.1:9/v1", api_key_env="RFTKIT_TEST_UNSET_KEY")
