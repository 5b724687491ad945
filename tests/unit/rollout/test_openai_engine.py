"""The openai engine's protocol and failure handling, against real HTTP servers on loopback.

The servers here answer as other servers do (vLLM's `token_id:N` tokens, an old server without
token ids, one that stalls or is overloaded); the engine against `rftkit serve` itself is
tested end to end in tests/e2e/test_rollout_server.py.
"""

import time

import pytest
import torch
from unit.graders.conftest import ScriptedServer

from rftkit.config import EngineOptions
from rftkit.errors import RftkitError
from rftkit.models.tiny import build_tiny
from rftkit.rollout.engine import EngineContext, EngineUnavailable, build_engine
from rftkit.types import SamplingParams

MODEL, TOKENIZER = build_tiny("tiny", seed=0)


@pytest.fixture
def server():
    """server(*script) starts a real HTTP server that answers each POST with the next
    (status, body, delay) of the script (the graders' ScriptedServer)."""
    made = []

    def start(*script):
        steps = list(script)

        def reply(path, body):
            status, answer, delay = steps.pop(0) if steps else (500, {"error": "script done"}, 0)
            time.sleep(delay)
            return status, answer

        made.append(ScriptedServer(reply))
        return made[-1]

    yield start
    for s in made:
        s.close()


def engine(root, tmp_path, **options):
    settings = {"base_url": f"{root}/v1", "model": "base", "max_retries": 2, "backoff_s": 0.01, "timeout_s": 2, **options}
    return build_engine("openai", EngineContext(MODEL, TOKENIZER, None, EngineOptions(**settings), tmp_path))


def choice(index, ids, logprobs, finish="stop", *, as_strings=False, with_ids=True):
    out = {"index": index, "text": "", "finish_reason": finish,
           "logprobs": {"tokens": [f"token_id:{t}" if as_strings else "x" for t in ids], "token_logprobs": logprobs}}
    if with_ids:
        out["token_ids"] = ids
    return out


def test_token_ids_and_logprobs_come_back_prompt_major(server, tmp_path):
    reply = {"choices": [choice(3, [9], [-0.9], "length"), choice(0, [5, 0], [-0.5, -0.1]),
                         choice(2, [8, 0], [-0.8, -0.2], as_strings=True, with_ids=False),
                         choice(1, [6], [-0.6], "length")]}
    s = server((200, reply, 0))
    (first, second) = engine(s.url, tmp_path).generate([[1, 2], [3]], SamplingParams(2, 0.7, top_k=5), n=2,
                                                       generator=torch.Generator().manual_seed(0))
    assert [c.token_ids for c in first] == [[5, 0], [6]] and [c.token_ids for c in second] == [[8, 0], [9]]
    assert [c.finish_reason for c in first + second] == ["stop", "length", "stop", "length"]
    assert second[0].logprobs == [-0.8, -0.2]
    path, body = s.requests[0]["path"], s.requests[0]["body"]
    assert path == "/v1/completions"
    assert body["prompt"] == [[1, 2], [3]] and body["n"] == 2 and body["logprobs"] == 0 and body["top_k"] == 5
    assert body["return_token_ids"] and body["temperature"] == 0.7 and isinstance(body["seed"], int)


def test_a_reply_without_token_ids_is_an_error_not_a_guess(server, tmp_path):
    s = server((200, {"choices": [{"index": 0, "text": "42", "finish_reason": "stop", "logprobs": None}]}, 0))
    with pytest.raises(RftkitError, match="without the sampled token ids and their log-probs"):
        engine(s.url, tmp_path).generate([[1]], SamplingParams(4))


def test_overload_is_retried_then_answers(server, tmp_path):
    s = server((503, {"error": "busy"}, 0), (200, {"choices": [choice(0, [7], [-0.7])]}, 0))
    ((completion,),) = engine(s.url, tmp_path).generate([[1]], SamplingParams(4))
    assert completion.token_ids == [7] and len(s.requests) == 2


def test_a_server_that_stalls_times_out_then_the_engine_gives_up(server, tmp_path):
    s = server(*[(200, {"choices": []}, 1.0)] * 3)
    started = time.perf_counter()
    with pytest.raises(EngineUnavailable, match=r"did not answer after 3 tries \(no answer from \S+ within 0.2 s\)"):
        engine(s.url, tmp_path, timeout_s=0.2).generate([[1]], SamplingParams(4))
    assert time.perf_counter() - started < 5


def test_an_unreachable_server_fails_cleanly(tmp_path):
    with pytest.raises(EngineUnavailable, match="127.0.0.1:9/v1/completions did not answer after 3 tries") as err:
        engine("http://127.0.0.1:9", tmp_path).generate([[1]], SamplingParams(4))
    assert "engine_options.base_url" in str(err.value)


def test_a_refused_request_is_not_retried_and_says_why(server, tmp_path):
    s = server((400, {"error": {"message": "model 'base' does not exist"}}, 0))
    with pytest.raises(RftkitError, match="HTTP 400: model 'base' does not exist"):
        engine(s.url, tmp_path).generate([[1]], SamplingParams(4))
    assert len(s.requests) == 1


def test_weights_reach_the_server_as_a_new_adapter_each_version(server, tmp_path):
    ok = (200, "Success", 0)
    s = server(ok, ok, ok, (200, {"choices": [choice(0, [7], [-0.7])]}, 0))
    openai = engine(s.url, tmp_path)
    openai.update_weights(MODEL, 0)
    openai.update_weights(MODEL, 0)  # already current: nothing sent
    openai.update_weights(MODEL, 1)
    assert [(r["path"], r["body"]["lora_name"]) for r in s.requests] == [
        ("/v1/load_lora_adapter", "base@v0"), ("/v1/load_lora_adapter", "base@v1"),
        ("/v1/unload_lora_adapter", "base@v0")]
    assert sorted(p.name for p in (tmp_path / "engine-weights").iterdir()) == ["v1"]  # v0 removed
    assert (tmp_path / "engine-weights" / "v1" / "config.json").exists()
    ((completion,),) = openai.generate([[1]], SamplingParams(4))
    assert s.requests[-1]["body"]["model"] == "base@v1" and completion.policy_version == 1
