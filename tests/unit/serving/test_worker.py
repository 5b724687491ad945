"""The inference worker's streaming: text as tokens arrive, whole characters only."""

import pytest

from rftkit.models.tiny import build_tiny
from rftkit.serving.client import ServingClient
from rftkit.serving.worker import TextStream


def test_text_stream_sends_whole_characters_and_skips_stop_tokens():
    _, tokenizer = build_tiny("tiny")
    ids = tokenizer("aé b", add_special_tokens=False)["input_ids"]  # é is two byte tokens
    stream = TextStream(tokenizer, 2, {tokenizer.eos_token_id})
    sent = [stream.add([0, 1], [token, token]) for token in ids + [tokenizer.eos_token_id]]
    assert [[piece for row, piece in step if row == 0] for step in sent] == [["a"], [], ["é"], [" "], ["b"], []]
    assert stream.rest(0, "aé b") == "" and stream.rest(1, "aé b!") == "!"


@pytest.fixture(scope="module")
def client():
    serving = ServingClient()
    yield serving
    serving.close()


def test_worker_streams_deltas_that_add_up_to_the_final_text(client, tiny_dir):
    request = {"model_path": str(tiny_dir), "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16,
               "temperature": 1.0, "top_p": 1.0, "n": 2, "seed": 3, "stream": True}
    messages = list(client.stream(request))
    final, deltas = messages[-1], [m["delta"] for m in messages[:-1]]
    assert len(deltas) > 2 and all("delta" not in m for m in messages[-1:])
    for index, choice in enumerate(final["choices"]):
        assert "".join(d["content"] for d in deltas if d["index"] == index) == choice["text"]
    assert client.complete({**request, "stream": False})["choices"] == final["choices"]  # same seed, same text


def test_an_abandoned_stream_leaves_the_worker_usable(client, tiny_dir):
    request = {"model_path": str(tiny_dir), "messages": [{"role": "user", "content": "hi"}], "max_tokens": 32,
               "temperature": 1.0, "n": 1, "seed": 1, "stream": True}
    messages = client.stream(request)
    next(messages)
    messages.close()  # the client went away mid-answer
    assert client.complete({**request, "stream": False})["choices"][0]["finish_reason"] in ("stop", "length")


def test_line_reader_returns_lines_that_arrive_together(tmp_path):
    import os

    from rftkit.serving.client import LineReader

    read_end, write_end = os.pipe()
    os.write(write_end, b'{"delta": 1}\n{"done": true}\n{"par')
    reader = LineReader()
    assert [reader.read(read_end, 1.0), reader.read(read_end, 1.0)] == ['{"delta": 1}', '{"done": true}']
    assert reader.read(read_end, 0.05) is None  # a partial line and nothing more: the wait times out
    os.close(write_end)
    assert reader.read(read_end, 1.0) is None  # closed
    os.close(read_end)
