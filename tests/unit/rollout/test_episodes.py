"""Multi-turn episodes: tool schemas, the episode loop's stop reasons, token-faithful trajectories.

`Script` is an engine that writes given turns (their ids, with log-prob -0.5 each): the loop's
rules are tested on turns chosen to hit each of them. The token-faithfulness and gradient tests
use the real tiny model and the lean engine.
"""

import sys
import time
from pathlib import Path

import pytest
import torch

from rftkit.data.chat import parse_tool_calls
from rftkit.errors import RftkitError
from rftkit.models.tiny import build_tiny
from rftkit.rollout.engine import Completion, Engine, local_engine
from rftkit.rollout.env import Env, StepResult, ToolEnv, ToolLimits, env_maker, load_factory, tool_schema
from rftkit.rollout.episodes import EpisodeLimits, EpisodeSampler
from rftkit.types import Example, SamplingParams

ENVS = Path(__file__).parent / "envs"
sys.path.insert(0, str(ENVS))
from calculator import Calculator  # noqa: E402

MODEL, TOKENIZER = build_tiny("tiny", seed=3)
EXAMPLE = Example([{"role": "user", "content": "12*34?"}], {"answer": "408", "hint": "use multiply"})


def call(name, **arguments):
    import json

    return f'<tool_call>{{"name": "{name}", "arguments": {json.dumps(arguments)}}}</tool_call>'


class Script(Engine):
    """Writes the given turns in order, the same for every episode of a call; a turn given as
    (text, "length") ends without the end-of-turn token, as at the length limit."""

    name, exact_logprobs = "script", True

    def __init__(self, *turns):
        super().__init__()
        self.turns, self.calls = list(turns), []

    def generate(self, prompts, params, *, n=1, generator=None, on_tokens=None, shard=None):
        self.calls.append([list(p) for p in prompts])
        text, finish = self.turns.pop(0) if isinstance(self.turns[0], tuple) else (self.turns.pop(0), "stop")
        ids = TOKENIZER(text, add_special_tokens=False)["input_ids"] + ([TOKENIZER.eos_token_id] if finish == "stop" else [])
        return [[Completion(list(ids), [-0.5] * len(ids), finish, 3) for _ in range(n)] for _ in prompts]


def episodes(engine, *, n=1, limits=EpisodeLimits(), tools=ToolLimits(), example=EXAMPLE):
    sampler = EpisodeSampler(lambda: ToolEnv(Calculator(), tools), limits)
    return sampler(engine, TOKENIZER, [example], None, n, SamplingParams(64))[0].samples


# ----------------------------------------------------------------------------- tools


def test_tool_schemas_are_generated_from_signatures_and_docstrings():
    assert tool_schema(Calculator().multiply) == {"type": "function", "function": {
        "name": "multiply", "description": "Multiply two integers.",
        "parameters": {"type": "object", "properties": {
            "a": {"type": "integer", "description": "The first factor."},
            "b": {"type": "integer", "description": "The second factor."}},
            "required": ["a", "b"]}}}
    env = ToolEnv(Calculator(), ToolLimits())
    assert [t["function"]["name"] for t in env.tools] == ["divide", "multiply", "spin", "wait"]  # not reset/reward


def test_a_tool_without_types_or_docs_is_a_clear_error():
    class Bad:
        def reset(self):
            pass

        def lookup(self, key):
            return key

    with pytest.raises(RftkitError, match="tool Bad.lookup: its signature cannot become a JSON schema"):
        env_maker(Bad, ToolLimits())


def test_factories_load_from_files_and_modules_with_clear_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a path relative to the job file works from anywhere else
    assert load_factory("calculator.py:Calculator", ENVS).__name__ == "Calculator"
    assert load_factory("calculator:Calculator", None) is Calculator  # importable module
    with pytest.raises(RftkitError, match="does not exist"):
        load_factory("nowhere.py:Calculator", ENVS)
    with pytest.raises(RftkitError, match="has no class 'Calc'"):
        load_factory("calculator.py:Calc", ENVS)
    with pytest.raises(RftkitError, match="is not MODULE:CLASS"):
        load_factory("calculator.py", ENVS)
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(RftkitError, match="broken.py does not import: ModuleNotFoundError"):
        load_factory("broken.py:X", tmp_path)
    (tmp_path / "noreset.py").write_text("class X:\n    pass\n")
    with pytest.raises(RftkitError, match="has no reset method"):
        load_factory("noreset.py:X", tmp_path)


def test_parse_tool_calls_reads_the_hermes_format_and_names_what_is_broken():
    turn = parse_tool_calls("I will multiply." + call("multiply", a=12, b=34))
    assert turn.content == "I will multiply."
    assert turn.tool_calls == [{"id": "call_0", "type": "function",
                                "function": {"name": "multiply", "arguments": '{"a": 12, "b": 34}'}}]
    assert parse_tool_calls("408").tool_calls == [] and parse_tool_calls("408").parse_error is None
    assert "not closed" in parse_tool_calls('<tool_call>{"name": "x"}').parse_error
    assert "arguments must be a JSON object" in parse_tool_calls('<tool_call>{"name": "x", "arguments": 3}</tool_call>').parse_error


# ----------------------------------------------------------------------------- the loop


def test_a_tool_call_then_an_answer_completes_with_the_result_masked():
    engine = Script(call("multiply", a=12, b=34), "408")
    sample, = episodes(engine)
    t = sample.trajectory
    assert t.stop_reason == "completed" and sample.output_text == "408"
    assert sample.output_tools == [{"id": "call_1_0", "type": "function", "name": "multiply",
                                    "arguments": '{"a": 12, "b": 34}', "error": False, "result": "408"}]
    assert [m["role"] for m in sample.messages] == ["user", "assistant", "tool", "assistant"]
    assert sample.messages[0]["content"] == "12*34?\n\nuse multiply"  # reset's text joins the first user turn
    assert [turn.role for turn in t.turns] == ["assistant", "tool", "assistant"]
    tool = t.turns[1]
    assert TOKENIZER.decode(list(t.completion_ids[tool.start:tool.end])) == "<|tool|>408<|end|><|assistant|>"
    assert t.loss_mask == tuple(int(turn.role == "assistant") for turn in t.turns for _ in range(turn.end - turn.start))
    assert all(lp == 0.0 for lp, m in zip(t.logprobs, t.loss_mask) if not m)
    # the second turn was sampled from exactly the ids the episode had: prompt + turn 1 + the tool result
    assert engine.calls[1][0] == list(t.prompt_ids) + list(t.completion_ids[:t.turns[2].start])


def test_max_turns_stops_an_episode_that_keeps_calling_tools():
    sample, = episodes(Script(*[call("multiply", a=1, b=2)] * 3), limits=EpisodeLimits(max_turns=2))
    assert sample.trajectory.stop_reason == "max_turns"
    assert sum(turn.role == "assistant" for turn in sample.trajectory.turns) == 2
    # the last turn's call still runs (a submit tool may decide the reward), but its result is not
    # put in the sequence: no model turn reads it
    assert len(sample.output_tools) == 2 and sample.trajectory.turns[-1].role == "assistant"


def test_tool_call_cap_stops_as_max_turns():
    turn = call("multiply", a=1, b=2) * 3
    sample, = episodes(Script(turn), tools=ToolLimits(max_tool_calls=2))
    assert sample.trajectory.stop_reason == "max_turns" and len(sample.output_tools) == 2


@pytest.mark.parametrize("text", ['<tool_call>{"name": "multiply", "arguments": {"a": 1</tool_call>',
                                  call("unknown_tool", a=1)])
def test_broken_json_or_an_unknown_tool_is_a_parse_error(text):
    sample, = episodes(Script(text))
    assert sample.trajectory.stop_reason == "parse_error" and sample.output_tools == []


def test_a_parse_error_can_be_said_back_to_the_model_instead():
    sample, = episodes(Script(call("unknown_tool"), "408"), tools=ToolLimits(on_parse_error="continue"))
    assert sample.trajectory.stop_reason == "completed"
    assert sample.messages[2]["role"] == "user" and "unknown tool 'unknown_tool'" in sample.messages[2]["content"]


def test_a_raising_tool_returns_its_error_or_ends_the_episode_as_configured():
    sample, = episodes(Script(call("divide", a=1, b=0), "sorry"))
    assert sample.trajectory.stop_reason == "completed"
    assert sample.output_tools[0]["error"] is True
    assert sample.output_tools[0]["result"] == "error: ZeroDivisionError: division by zero"
    sample, = episodes(Script(call("divide", a=1, b=0)), tools=ToolLimits(on_tool_error="end"))
    assert sample.trajectory.stop_reason == "tool_error"
    sample, = episodes(Script(call("divide", a=1, c=0), "x"))  # arguments that do not fit the tool
    assert sample.output_tools[0]["result"].startswith("error: TypeError")


@pytest.mark.parametrize("tool,arguments", [("wait", {"seconds": 60}), ("spin", {"n": 0})])
def test_a_hanging_tool_is_stopped_at_its_time_limit(tool, arguments):
    started = time.monotonic()
    sample, = episodes(Script(call(tool, **arguments)), tools=ToolLimits(timeout_s=0.3))
    assert sample.trajectory.stop_reason == "timeout"
    assert sample.output_tools[0]["result"] == f"error: {tool} took longer than 0.3 s"
    assert time.monotonic() - started < 30  # a hang guard: the tool alone would run 60 s or forever


def test_length_limits_stop_as_max_tokens():
    sample, = episodes(Script(("12 times 34 is", "length")))
    assert sample.trajectory.stop_reason == "max_tokens" and sample.trajectory.finish_reason == "length"
    sample, = episodes(Script(call("multiply", a=12, b=34), "408"), limits=EpisodeLimits(max_tokens=60))
    assert sample.trajectory.stop_reason == "max_tokens"
    assert len(sample.trajectory.completion_ids) <= 60


def test_masked_stop_reasons_leave_the_episode_out_of_the_loss():
    sample, = episodes(Script(call("wait", seconds=60)), tools=ToolLimits(timeout_s=0.2),
                       limits=EpisodeLimits(masked=frozenset({"timeout"})))
    assert sample.trajectory.stop_reason == "timeout" and sample.trajectory.sampled_tokens == 0


class Flaky(Env):
    """A native environment whose step fails on one episode only."""

    count = 0

    def step(self, turn):
        Flaky.count += 1
        if Flaky.count == 2:
            raise RuntimeError("the environment broke")
        return StepResult(done=True, stop_reason="completed")

    def reward(self):
        return 1.0


def test_one_broken_environment_ends_only_its_own_episode():
    Flaky.count = 0
    sampler = EpisodeSampler(Flaky, EpisodeLimits())
    samples = sampler(Script("a"), TOKENIZER, [EXAMPLE], None, 3, SamplingParams(8))[0].samples
    assert [s.stop_reason for s in samples] == ["completed", "tool_error", "completed"]
    assert samples[1].episode_error == "step: RuntimeError: the environment broke"
    assert [s.environment_reward for s in samples] == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------- token in, token out


class Chatty(Env):
    """Replies to every turn with a user message, for three model turns."""

    def step(self, turn):
        return StepResult([{"role": "user", "content": "and then?"}])


class Recording(Engine):
    """The lean engine, keeping what it returned."""

    name, exact_logprobs = "recording", True

    def __init__(self, inner):
        super().__init__()
        self.inner, self.returned = inner, []

    def generate(self, prompts, params, *, n=1, generator=None, on_tokens=None, shard=None):
        drawn = self.inner.generate(prompts, params, n=n, generator=generator, shard=shard)
        self.returned.append(drawn)
        return drawn


@pytest.fixture(scope="module")
def talker():
    """The tiny model after a few SFT steps on short answers, so its turns end by themselves."""
    from rftkit.train.sft import SFTSettings, run_sft

    model, tokenizer = build_tiny("tiny", seed=4)
    rows = [Example([{"role": "user", "content": q}, {"role": "assistant", "content": "ok"}], {})
            for q in ("hi", "and then?", "12*34?", "go on")]
    run_sft(model, tokenizer, rows, [], SFTSettings(total_steps=40, batch_size=4, learning_rate=3e-3))
    return model


def test_trained_ids_are_the_sampled_ids_over_a_three_turn_episode(talker):
    from rftkit.train.logprobs import pack

    engine = Recording(local_engine(talker, TOKENIZER, "lean"))
    engine.inner.update_weights(talker, 0)
    sampler = EpisodeSampler(Chatty, EpisodeLimits(max_turns=3))
    groups = sampler(engine, TOKENIZER, [EXAMPLE], None, 2, SamplingParams(12, temperature=1.0),
                     generator=torch.Generator().manual_seed(0))
    for row, sample in enumerate(groups[0].samples):
        t = sample.trajectory
        assert t.stop_reason == "max_turns" and [turn.role for turn in t.turns] == [
            "assistant", "user", "assistant", "user", "assistant"]
        sampled = [engine.returned[0][0][row]] + [engine.returned[r][row][0] for r in (1, 2)]
        for turn, completion in zip([x for x in t.turns if x.role == "assistant"], sampled):
            assert list(t.completion_ids[turn.start:turn.end]) == completion.token_ids  # byte for byte
            assert list(t.logprobs[turn.start:turn.end]) == completion.logprobs
        batch, _ = pack([t], [0], TOKENIZER.pad_token_id, torch.device("cpu"))
        assert batch.input_ids_NT[0].tolist() == list(t.prompt_ids) + list(t.completion_ids)
        assert batch.loss_mask_NC[0].tolist() == list(t.loss_mask)


def test_tool_tokens_contribute_no_gradient(talker):
    from rftkit.algo.losses import POLICY_LOSSES, aggregate
    from rftkit.train.logprobs import completion_logprobs, pack

    sample, = episodes(Script(call("multiply", a=12, b=34), "408"))
    t = sample.trajectory

    def loss_of(trajectory):
        """The policy loss as the update computes it: per-token terms, reduced over the loss mask."""
        batch, _ = pack([trajectory], [0], TOKENIZER.pad_token_id, torch.device("cpu"))
        logprobs = completion_logprobs(talker, batch, 1.0).logprobs_NC
        advantages = torch.ones_like(logprobs)
        terms, _ = POLICY_LOSSES["ppo_clip"](logprobs, logprobs.detach() - 0.1, advantages, batch.loss_mask_NC)
        return logprobs, terms, aggregate(terms, batch.loss_mask_NC, "token_mean"), batch.loss_mask_NC[0]

    logprobs, terms, loss, mask = loss_of(t)
    assert int((mask == 0).sum()) == t.turns[1].end - t.turns[1].start  # the tool result, nothing else
    gradient, = torch.autograd.grad(loss, logprobs)
    assert torch.all(gradient[0][mask == 0] == 0.0)  # exactly zero at every tool and template token
    assert torch.all(gradient[0][mask == 1] != 0.0)
    # a different tool result: no sampled token before it moves, and the loss still reads no tool token
    at = t.turns[1].start + len("<|tool|>")
    changed = list(t.completion_ids)
    changed[at] = TOKENIZER("9", add_special_tokens=False)["input_ids"][0]
    other = type(t)(t.prompt_ids, tuple(changed), t.logprobs, t.loss_mask, t.turns, t.finish_reason, t.stop_reason)
    logprobs2, terms2, loss2, _ = loss_of(other)
    assert torch.equal(logprobs2[0][:at], logprobs[0][:at])
    assert torch.equal(terms2[0][:at], terms[0][:at])
    gradient2, = torch.autograd.grad(loss2, logprobs2)
    assert torch.all(gradient2[0][mask == 0] == 0.0)
