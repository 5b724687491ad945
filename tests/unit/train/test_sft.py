import torch

from helpers import assistant, user
from rftkit.config import Optimizer
from rftkit.data.validate import load_examples
from rftkit.eval.exact_match import exact_match
from rftkit.models.tiny import build_tiny
from rftkit.rollout import local_engine
from rftkit.train.order import DataOrder
from rftkit.train.sft import IGNORE, SFTSettings, SupervisedPair, collate, completion_loss, run_sft
from rftkit.types import Example


def test_labels_cover_only_the_completion():
    pairs = [SupervisedPair([1, 2, 3], [4, 5]), SupervisedPair([1], [6])]
    input_ids, mask, labels = collate(pairs, pad_id=0)
    assert input_ids.tolist() == [[1, 2, 3, 4, 5], [1, 6, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert labels.tolist() == [[IGNORE, IGNORE, IGNORE, 4, 5], [IGNORE, 6, IGNORE, IGNORE, IGNORE]]


def test_loss_ignores_prompt_tokens():
    model, _ = build_tiny("tiny", seed=0)
    a = completion_loss(model, [SupervisedPair([10, 11, 12], [40, 41])], pad_id=256)
    b = completion_loss(model, [SupervisedPair([10, 11, 12], [40, 41])], pad_id=256)
    assert a[1] == 2 and torch.allclose(a[0], b[0])
    # the loss is the mean negative log-likelihood of exactly the two completion tokens
    with torch.no_grad():
        logits = model(torch.tensor([[10, 11, 12, 40, 41]])).logits[0]
    nll = -(logits[2].log_softmax(-1)[40] + logits[3].log_softmax(-1)[41]) / 2
    assert torch.allclose(a[0], nll, atol=1e-5)


def test_data_order_resumes_exactly():
    whole = DataOrder(7, seed=3)
    batches = [whole.next_batch(3) for _ in range(5)]
    resumed = DataOrder(7, seed=3)
    first = [resumed.next_batch(3) for _ in range(2)]
    restored = DataOrder.from_state(resumed.state_dict())
    assert first + [restored.next_batch(3) for _ in range(3)] == batches
    assert sorted(sum(batches, [])[:7]) == list(range(7))  # each epoch is a permutation


def test_sft_raises_held_out_exact_match():
    """One-digit sums: the untrained model gets none; a short SFT gets many."""
    rows = [Example([user(f"{a}+{b}="), assistant(str(a + b))], {}) for a in range(10) for b in range(10)]
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(100, generator=generator).tolist()
    train, held_out = [rows[i] for i in order[:80]], [rows[i] for i in order[80:]]
    model, tokenizer = build_tiny("tiny", seed=0)
    engine = local_engine(model, tokenizer)
    before = exact_match(engine, tokenizer, held_out, max_new_tokens=4)
    settings = SFTSettings(total_steps=250, batch_size=32, learning_rate=3e-3, seed=0,
                           optimizer=Optimizer(warmup_steps=20, schedule="cosine"), max_completion_tokens=4)
    start = [p.detach().clone() for p in model.parameters()]
    history = run_sft(model, tokenizer, train, held_out, settings)
    after = exact_match(engine, tokenizer, held_out, max_new_tokens=4)
    assert before.accuracy == 0.0
    assert after.accuracy >= 0.5, after.predictions
    assert history[-1]["valid_loss"] < history[0]["train_loss"]
    assert any(not torch.equal(a, b) for a, b in zip(start, model.parameters()))


def test_sft_with_lora_moves_only_the_adapter(tiny_dir):
    from rftkit.config import LoraOptions
    from rftkit.models.load import load_policy

    model, tokenizer = load_policy(str(tiny_dir), "cpu", LoraOptions(enabled=True, r=4))
    rows = [Example([user(f"{a}+1="), assistant(str(a + 1))], {}) for a in range(10)]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    history = run_sft(model, tokenizer, rows, [], SFTSettings(total_steps=5, batch_size=5, learning_rate=1e-2))
    assert len(history) == 5
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert any(not torch.equal(p, adapters[n]) for n, p in model.named_parameters() if n in adapters)


def test_sft_on_a_bf16_model_clips_and_steps_its_fp32_masters(tiny_dir):
    from rftkit.models.load import load_policy

    model, tokenizer = load_policy(str(tiny_dir), "cpu", precision="bf16")
    assert model.dtype == torch.bfloat16
    rows = [Example([user(f"{a}+1="), assistant(str(a + 1))], {}) for a in range(10)]
    start = [p.detach().clone() for p in model.parameters()]
    history = run_sft(model, tokenizer, rows, [], SFTSettings(total_steps=4, batch_size=5, learning_rate=1e-2))
    # the gradients live in the masters: measured there (the model's own are freed), and stepped
    assert all(row["grad_norm"] > 0 for row in history)
    assert all(p.dtype == torch.bfloat16 and p.grad is None for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(start, model.parameters()))


TRANSCRIPT = [
    {"role": "user", "content": "12*34="},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {
        "name": "mul", "arguments": '{"a": 12, "b": 34}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "408"},
    {"role": "assistant", "content": "408"},
]


def test_tool_transcripts_train_every_assistant_turn_and_mask_tool_results():
    from rftkit.train.sft import encode_supervised

    _, tokenizer = build_tiny("tiny", seed=0)
    pair, = encode_supervised(tokenizer, [Example(TRANSCRIPT, {})], 512)
    decode = lambda ids: tokenizer.decode(ids)  # noqa: E731
    assert decode(pair.prompt_ids) == "<|bos|><|user|>12*34=<|end|><|assistant|>"
    trained = [i for i, m in zip(pair.completion_ids, pair.loss_mask) if m]
    masked = [i for i, m in zip(pair.completion_ids, pair.loss_mask) if not m]
    assert decode(trained) == '<tool_call>{"name": "mul", "arguments": {"a": 12, "b": 34}}</tool_call><|end|>408<|end|>'
    assert decode(masked) == "<|tool|>408<|end|><|assistant|>"
    _, _, labels = collate([pair], pad_id=tokenizer.pad_token_id)
    kept = [t for t in labels[0].tolist() if t != IGNORE]
    assert kept == trained  # the loss reads the assistant turns only


def test_a_transcript_is_laid_out_as_its_episode_samples_it():
    """SFT's ids for a transcript are the ids an episode puts together from the same turns."""
    from rftkit.data.conversation import observation_ids
    from rftkit.train.sft import encode_supervised

    _, tokenizer = build_tiny("tiny", seed=0)
    pair, = encode_supervised(tokenizer, [Example(TRANSCRIPT, {})], 512)
    first = tokenizer('<tool_call>{"name": "mul", "arguments": {"a": 12, "b": 34}}</tool_call>',
                      add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    between = observation_ids(tokenizer, TRANSCRIPT[:2], TRANSCRIPT[2:3], None)
    last = tokenizer("408", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert pair.completion_ids == first + between + last
