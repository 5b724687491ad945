"""The trainer's log-probs equal the sampling pass's, with left-padded prompts of different lengths."""

import pytest
import torch

from rftkit.models.tiny import build_tiny
from rftkit.rollout.hf import SamplingParams, generate, stop_token_ids
from rftkit.train.logprobs import completion_logprobs, pack, whole_forward_logprobs
from rftkit.types import Trajectory, Turn

MODEL, TOKENIZER = build_tiny("tiny", seed=1)


def encode(text):
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


def sampled_batch(temperature=0.8):
    prompts = [encode("1+2="), encode("123456+789="), encode("x"), encode("a longer prompt with words")]
    repeated = [p for p in prompts for _ in range(3)]
    completions = generate(MODEL, repeated, SamplingParams(12, temperature), pad_id=TOKENIZER.pad_token_id,
                           stop_ids=stop_token_ids(MODEL, TOKENIZER), generator=torch.Generator().manual_seed(0))
    trajectories = [Trajectory.single_turn(p, c.token_ids, c.logprobs, c.finish_reason)
                    for p, c in zip(repeated, completions)]
    batch, sampled = pack(trajectories, [row // 3 for row in range(len(repeated))], TOKENIZER.pad_token_id,
                          torch.device("cpu"))
    assert torch.equal(sampled, torch.nn.utils.rnn.pad_sequence([torch.tensor(c.logprobs) for c in completions],
                                                                batch_first=True))
    return batch, completions


def test_trainer_logprobs_equal_sampling_logprobs():
    batch, completions = sampled_batch()
    scores = completion_logprobs(MODEL, batch, 0.8)
    for row, completion in enumerate(completions):
        n = len(completion.token_ids)
        assert torch.allclose(scores.logprobs_NC[row, :n], torch.tensor(completion.logprobs), atol=1e-4)
        assert torch.all(scores.logprobs_NC[row, n:] == 0)


def test_sub_batches_trim_padding_without_changing_logprobs():
    batch, _ = sampled_batch()
    full = completion_logprobs(MODEL, batch, 0.8).logprobs_NC
    index = torch.tensor([0, 1, 2])
    sub = batch.rows(index)
    assert sub.input_ids_NT.shape[1] < batch.input_ids_NT.shape[1]
    part = completion_logprobs(MODEL, sub, 0.8).logprobs_NC
    assert torch.allclose(part, full[index][:, : part.shape[1]], atol=1e-5)


def test_the_whole_forward_path_gives_the_same_scores_and_gradients():
    """What a sharded (FSDP) update reads: the model's own forward over every position."""
    batch, _ = sampled_batch()
    cached = completion_logprobs(MODEL, batch, 0.8, entropy_grad=True)
    whole = whole_forward_logprobs(MODEL, batch, 0.8, entropy_grad=True)
    torch.testing.assert_close(whole.logprobs_NC, cached.logprobs_NC, atol=1e-5, rtol=0)
    torch.testing.assert_close(whole.entropy_NC, cached.entropy_NC, atol=1e-5, rtol=0)
    grads = []
    for scores in (cached, whole):
        MODEL.zero_grad(set_to_none=True)
        (scores.logprobs_NC.sum() + scores.entropy_NC.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in MODEL.parameters()]))
    MODEL.zero_grad(set_to_none=True)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)


def test_entropy_matches_a_full_softmax():
    batch, _ = sampled_batch(temperature=1.0)
    scores = completion_logprobs(MODEL, batch, 1.0)
    with torch.no_grad():
        logits = MODEL(input_ids=batch.input_ids_NT, attention_mask=batch.attention_mask_NT,
                       position_ids=batch.position_ids_NT).logits
    width = batch.completion_mask_NC.shape[1]
    logits = logits[:, batch.prompt_width - 1: batch.prompt_width - 1 + width]
    probs = logits.softmax(-1)
    entropy = -(probs * probs.clamp(min=1e-30).log()).sum(-1) * batch.completion_mask_NC
    assert torch.allclose(scores.entropy_NC, entropy, atol=1e-4)


def full_forward_logprobs(batch, temperature):
    """The plain way: every row's whole sequence through the model, then slice."""
    logits = MODEL(input_ids=batch.input_ids_NT, attention_mask=batch.attention_mask_NT,
                   position_ids=batch.position_ids_NT).logits
    width = batch.completion_mask_NC.shape[1]
    logits = logits[:, batch.prompt_width - 1: batch.prompt_width - 1 + width] / temperature
    picked = logits.log_softmax(-1).gather(-1, batch.completion_ids_NC[..., None])[..., 0]
    return picked * batch.completion_mask_NC


@pytest.mark.parametrize("order", [list(range(12)), [5, 0, 11, 3, 1, 7, 2, 9, 4], [0, 1, 2, 3, 4, 5]],
                         ids=["groups of 3 in a row: expanded", "mixed and uneven: indexed", "two groups"])
def test_shared_prompts_give_the_same_logprobs_and_gradients(order):
    batch, _ = sampled_batch()  # 4 prompts x 3 rows: the prefix is computed once per prompt
    batch = batch.rows(torch.tensor(order))
    grads = []
    for compute in (lambda: completion_logprobs(MODEL, batch, 0.8).logprobs_NC,
                    lambda: full_forward_logprobs(batch, 0.8)):
        MODEL.zero_grad()
        logprobs = compute()
        (logprobs * torch.linspace(-1, 1, logprobs.numel()).view_as(logprobs)).sum().backward()
        grads.append((logprobs.detach(), [p.grad.clone() for p in MODEL.parameters()]))
    (shared, shared_grads), (plain, plain_grads) = grads
    assert torch.allclose(shared, plain, atol=1e-5)
    for a, b in zip(shared_grads, plain_grads):
        assert torch.allclose(a, b, atol=1e-5)
    MODEL.zero_grad()


def test_chunks_of_rows_give_the_same_logprobs_and_gradients():
    batch, _ = sampled_batch()
    results = []
    for chunk_logits in (1, 3 * 12 * 300, 1 << 22):  # a row at a time, a few rows, all rows at once
        MODEL.zero_grad()
        scores = completion_logprobs(MODEL, batch, 0.8, chunk_logits=chunk_logits)
        (scores.logprobs_NC * torch.linspace(-1, 1, scores.logprobs_NC.numel()).view_as(scores.logprobs_NC)).sum().backward()
        results.append((scores.logprobs_NC.detach(), scores.entropy_NC, [p.grad.clone() for p in MODEL.parameters()]))
    MODEL.zero_grad()
    for logprobs, entropy, grads in results[1:]:
        torch.testing.assert_close(logprobs, results[0][0], rtol=0, atol=1e-6)
        torch.testing.assert_close(entropy, results[0][1], rtol=0, atol=1e-6)
        for a, b in zip(grads, results[0][2]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_pack_lays_out_inserted_tokens_with_loss_mask_zero():
    """A two-turn trajectory: the tokens a tool put in are read by the model, never trained on."""
    tool = Trajectory((5, 6), (7, 8, 9, 10), (-0.5, 0.0, 0.0, -0.25), (1, 0, 0, 1),
                      (Turn("assistant", 0, 1), Turn("tool", 1, 3), Turn("assistant", 3, 4)), "stop", "completed")
    plain = Trajectory.single_turn((4,), (11,), (-1.0,), "length")
    batch, sampled = pack([tool, plain], [0, 1], pad_id=0, device=torch.device("cpu"))
    assert batch.input_ids_NT.tolist() == [[5, 6, 7, 8, 9, 10], [0, 4, 11, 0, 0, 0]]
    assert batch.completion_mask_NC.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
    assert batch.loss_mask_NC.tolist() == [[1, 0, 0, 1], [1, 0, 0, 0]]
    assert batch.group_N.tolist() == [0, 1]
    assert sampled.tolist() == [[-0.5, 0.0, 0.0, -0.25], [-1.0, 0.0, 0.0, 0.0]]
