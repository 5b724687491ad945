import torch

from rftkit.models.tiny import build_tiny
from rftkit.rollout.hf import SamplingParams, filter_logits, generate, left_pad, stop_token_ids

MODEL, TOKENIZER = build_tiny("tiny", seed=3)
MODEL.eval()


def ids(text):
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


def test_left_pad_positions_follow_the_mask():
    input_ids, mask, positions = left_pad([[5, 6, 7], [9]], pad_id=0, device=torch.device("cpu"))
    assert input_ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_greedy_answer_does_not_depend_on_batch_neighbours():
    params = SamplingParams(max_new_tokens=12, temperature=0)
    stops = stop_token_ids(MODEL, TOKENIZER)
    short = ids("1+1=")
    alone = generate(MODEL, [short], params, pad_id=TOKENIZER.pad_token_id, stop_ids=stops)[0]
    batched = generate(MODEL, [ids("123456789+987654321="), short], params, pad_id=TOKENIZER.pad_token_id, stop_ids=stops)[1]
    assert alone.token_ids == batched.token_ids
    assert torch.allclose(torch.tensor(alone.logprobs), torch.tensor(batched.logprobs), atol=1e-4)


def test_sampling_is_reproducible_for_a_seed_and_stops_at_eos():
    params = SamplingParams(max_new_tokens=20, temperature=1.0)
    stops = stop_token_ids(MODEL, TOKENIZER)
    run = lambda seed: generate(MODEL, [ids("7+8=")] * 4, params, pad_id=TOKENIZER.pad_token_id,
                                stop_ids=stops, generator=torch.Generator().manual_seed(seed))
    first, second = run(11), run(11)
    assert [c.token_ids for c in first] == [c.token_ids for c in second]
    for completion in first:
        assert len(completion.token_ids) == len(completion.logprobs) <= 20
        if completion.finish_reason == "stop":
            assert completion.token_ids[-1] in stops
            assert not any(t in stops for t in completion.token_ids[:-1])
        else:
            assert len(completion.token_ids) == 20


def test_sampling_logprobs_match_a_full_forward_pass():
    params = SamplingParams(max_new_tokens=8, temperature=0.7)
    prompt = ids("12+30=")
    (completion,) = generate(MODEL, [prompt], params, pad_id=TOKENIZER.pad_token_id, stop_ids=set(),
                             generator=torch.Generator().manual_seed(0))
    full = torch.tensor([prompt + completion.token_ids])
    with torch.no_grad():
        logits = MODEL(full).logits[0, len(prompt) - 1:-1] / 0.7
    expected = logits.log_softmax(-1).gather(-1, torch.tensor(completion.token_ids)[:, None])[:, 0]
    assert torch.allclose(torch.tensor(completion.logprobs), expected, atol=1e-4)


def test_top_k_and_top_p_filtering_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept_k = filter_logits(logits, SamplingParams(1, top_k=2)).isfinite()
    assert kept_k.tolist() == [[True, True, False, False]]
    kept_p = filter_logits(logits, SamplingParams(1, top_p=0.8)).isfinite()
    assert kept_p.tolist() == [[True, True, False, False]]  # 0.5 + 0.3 reaches 0.8
    kept_p = filter_logits(logits, SamplingParams(1, top_p=0.81)).isfinite()
    assert kept_p.tolist() == [[True, True, True, False]]


def test_sampling_follows_the_distribution():
    from rftkit.rollout.hf import sample_next

    probs = torch.tensor([0.5, 0.0, 0.3, 0.2])
    logits = probs.clamp(min=1e-30).log().expand(20000, 4)
    tokens, logprobs = sample_next(logits, SamplingParams(1, 1.0), torch.Generator().manual_seed(0))
    counts = torch.bincount(tokens, minlength=4) / len(tokens)
    assert counts[1] == 0  # a token of probability 0 is never drawn
    assert torch.allclose(counts, probs, atol=0.015)
    assert torch.allclose(logprobs, probs[tokens].log(), atol=1e-5)
