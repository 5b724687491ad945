"""`rftkit serve` as a rollout server: /v1/completions with token ids and log-probs, vLLM's
runtime adapter routes, and a job that samples through it (engine openai), fails cleanly when
the server dies, and resumes."""

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
import torch

from helpers import metrics_of, run_cli, write_job
from service_helpers import Server, create_key

from rftkit.models.load import load_policy, save_policy
from rftkit.models.tiny import build_tiny
from rftkit.rollout import local_engine
from rftkit.types import SamplingParams


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_dir):
    data = tmp_path_factory.mktemp("rollout-server")
    keys = create_key(data), create_key(data, project="other")
    server = Server(data, workers=0, args=("--model-dir", str(tiny_dir), "--model-dir", str(data.parent))).start()
    yield server, keys
    server.stop()


def post(served, path, body, key=0):
    server, keys = served
    return httpx.post(f"{server.url}/v1{path}", json=body, headers={"Authorization": f"Bearer {keys[key]}"},
                      timeout=120)


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_completions_answer_with_the_sampled_token_ids_and_their_logprobs(served, tiny_dir):
    model, tokenizer = load_policy(str(tiny_dir), "cpu")
    prompts = [ids(tokenizer, "12+3="), ids(tokenizer, "7+8=")]
    body = {"model": str(tiny_dir), "prompt": prompts, "n": 2, "max_tokens": 8, "temperature": 0,
            "logprobs": 0, "return_token_ids": True}
    reply = post(served, "/completions", body)
    assert reply.status_code == 200, reply.text
    choices = reply.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3] and choices[0]["prompt_token_ids"] == prompts[0]
    expected = local_engine(model, tokenizer).generate(prompts, SamplingParams(8, temperature=0.0), n=2)
    for choice, completion in zip(choices, [c for drawn in expected for c in drawn]):
        assert choice["token_ids"] == completion.token_ids
        assert choice["logprobs"]["token_logprobs"] == pytest.approx(completion.logprobs, abs=1e-4)
        assert choice["text"] == tokenizer.decode(completion.token_ids, skip_special_tokens=True)
    sampled = {**body, "temperature": 1.0, "seed": 5, "return_tokens_as_token_ids": True}
    first, again = (post(served, "/completions", sampled).json()["choices"] for _ in range(2))
    assert [c["token_ids"] for c in first] == [c["token_ids"] for c in again]  # one seed, one answer
    assert first[0]["logprobs"]["tokens"] == [f"token_id:{t}" for t in first[0]["token_ids"]]


@pytest.mark.parametrize("change, message", [
    ({"logprobs": 2}, "only 0"), ({"prompt": [[1, 10**9]]}, "token ids must be"), ({"prompt": [[]]}, "prompt"),
    ({"prompt": [1, "a"]}, "prompt"), ({"stop": ["\n"]}, "not supported"), ({"model": "nope"}, "no model 'nope'"),
])
def test_bad_completion_requests_say_what_is_wrong(served, tiny_dir, change, message):
    reply = post(served, "/completions", {"model": str(tiny_dir), "prompt": [[1, 2]], "max_tokens": 2, **change})
    assert reply.status_code in (400, 404) and message in reply.json()["error"]["message"]


def test_runtime_adapters_serve_new_weights_under_a_name_for_one_project(served, tmp_path_factory):
    model, tokenizer = build_tiny("tiny", seed=11)
    folder = save_policy(model, tokenizer, tmp_path_factory.mktemp("weights") / "v1")  # in the shared --model-dir
    assert post(served, "/load_lora_adapter", {"lora_name": "mine@v1", "lora_path": str(folder)}).status_code == 200
    prompt = ids(tokenizer, "1+1=")
    body = {"model": "mine@v1", "prompt": [prompt], "max_tokens": 6, "temperature": 0, "logprobs": 0,
            "return_token_ids": True}
    (choice,) = post(served, "/completions", body).json()["choices"]
    ((expected,),) = local_engine(model, tokenizer).generate([prompt], SamplingParams(6, temperature=0.0))
    assert choice["token_ids"] == expected.token_ids
    assert post(served, "/completions", body, key=1).status_code == 404  # another project cannot see it
    assert post(served, "/unload_lora_adapter", {"lora_name": "mine@v1"}).status_code == 200
    assert post(served, "/completions", body).status_code == 404
    assert post(served, "/unload_lora_adapter", {"lora_name": "mine@v1"}).status_code == 404
    refused = post(served, "/load_lora_adapter", {"lora_name": "x", "lora_path": str(folder.parent)})
    assert refused.status_code == 400 and "adapter_config.json or config.json" in refused.json()["error"]["message"]
    outside = post(served, "/load_lora_adapter", {"lora_name": "x", "lora_path": "/usr/lib"})
    assert outside.status_code == 400 and "not a folder this project may load" in outside.json()["error"]["message"]


def test_an_asynchronous_job_has_the_server_sample_the_next_step_while_it_trains(served, tiny_dir, tmp_path,
                                                                                  monkeypatch):
    server, keys = served
    monkeypatch.setenv("ROLLOUT_KEY", keys[0])
    job = write_job(tmp_path, tiny_dir, steps=3, engine="openai", asynchronous={"max_staleness": 1},
                    engine_options={"base_url": f"{server.url}/v1", "api_key_env": "ROLLOUT_KEY", "timeout_s": 60})
    result = run_cli("train", job, "--out", tmp_path / "run", "--force")
    assert result.returncode == 0, result.stderr[-3000:]
    steps = metrics_of(tmp_path / "run")
    assert [m["staleness_mean"] for m in steps] == [0.0, 1.0, 1.0]  # steps 2 and 3 were sampled while 1 and 2 trained
    assert all(m["stale_dropped_frac"] == 0.0 and "is_ratio_mean" in m for m in steps)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 3 and "pass_at_1" in summary["final"]


def test_chat_logprobs_are_those_of_the_sampled_tokens(served, tiny_dir):
    body = {"model": str(tiny_dir), "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
            "temperature": 0, "logprobs": True}
    (choice,) = post(served, "/chat/completions", body).json()["choices"]
    content = choice["logprobs"]["content"]
    assert len(content) >= 1 and all(item["logprob"] <= 0 and item["top_logprobs"] == [] for item in content)
    assert "".join(item["token"] for item in content).startswith(choice["message"]["content"])
    assert post(served, "/chat/completions", {**body, "top_logprobs": 3}).status_code == 400


# ----------------------------------------------------------------------------- training through the server


def train(job, run, *extra, timeout=900):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "rftkit.cli", "train", str(job), "--out", str(run), *extra],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def addition(tmp_path_factory):
    """The addition task and a tiny model warm-started as the demo does, until it solves about a
    fifth of the training prompts."""
    from rftkit.cli.model import warm_start
    from rftkit.cli.train import competence_check
    from rftkit.data.builtin import write_addition

    folder = tmp_path_factory.mktemp("addition")
    files = write_addition(folder / "data", train=400, valid=64, sft=500, seed=0)
    torch.manual_seed(0)
    model, tokenizer = build_tiny("tiny", 0)
    check = competence_check(model, tokenizer, files["train"], 0.2, after=100)
    warm_start(model, tokenizer, files["sft"], None, steps=600, lr=3e-3, batch_size=32, seed=0, should_stop=check)
    return folder, save_policy(model, tokenizer, folder / "base")


@pytest.mark.slow
def test_a_job_trains_through_the_server_survives_its_death_and_resumes(addition, tmp_path):
    from rftkit.data.builtin import addition_job

    folder, base = addition
    data = tmp_path / "server"
    key = create_key(data)
    shared = ("--model-dir", str(folder), "--model-dir", str(tmp_path))  # the base, and the run's engine-weights
    server = Server(data, workers=0, env={"OMP_NUM_THREADS": "2"}, args=shared).start()
    body = addition_job(str(base), folder / "data", steps=60, seed=0)
    body["method"]["reinforcement"]["hyperparameters"].update(batch_size=16, n_epochs=3, eval_interval=10)
    body["rftkit"].update(
        engine="openai", eval={"k": 4}, checkpoints={"interval": 5, "keep_last": 1, "keep_best": 0},
        engine_options={"base_url": f"{server.url}/v1", "api_key_env": "ROLLOUT_KEY", "timeout_s": 60,
                        "max_retries": 2, "backoff_s": 0.2})
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps(body))
    run = tmp_path / "run"
    os.environ["ROLLOUT_KEY"] = key
    try:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        process = subprocess.Popen([sys.executable, "-m", "rftkit.cli", "train", str(job), "--out", str(run)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        metrics, deadline = run / "metrics.jsonl", time.time() + 600
        while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 12):
            assert process.poll() is None, process.stderr.read()[-3000:]
            time.sleep(0.2)
        server.kill()
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, stderr[-3000:]
        assert "rollout engine failed at step" in stderr and "continue with --resume" in stderr
        assert "Traceback" not in stderr
        failed_at = json.loads((run / "summary.json").read_text())["steps"]
        assert 12 <= failed_at < 60 and (run / f"checkpoint-{failed_at}").is_dir()
        events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
        assert any(e["level"] == "error" and "did not answer after 3 tries" in e["message"] for e in events)

        server = Server(data, workers=0, env={"OMP_NUM_THREADS": "2"}, args=shared)
        server.port = int(body["rftkit"]["engine_options"]["base_url"].split(":")[2].split("/")[0])
        server.start()
        resumed = train(job, run, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    finally:
        server.stop()
        os.environ.pop("ROLLOUT_KEY", None)
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps] == list(range(1, 61))  # every step exactly once
    assert all(0.5 < m["is_ratio_mean"] < 2 for m in steps) and all("time_old_log_prob" in m for m in steps)
    summary = json.loads((run / "summary.json").read_text())
    before, after = summary["baseline"]["pass_at_1"], summary["final"]["pass_at_1"]
    tokens_per_s = sum(m["tokens_per_s"] for m in steps) / len(steps)
    print(f"openai engine via rftkit serve: held-out pass@1 {before:.1%} -> {after:.1%}, "
          f"{tokens_per_s:.0f} sampled tokens/s")
    assert after > before + 0.05, (before, after)
