"""② The episode loop: multi-turn, tool-using rollouts over any engine, token in and token out.

Each round, every running episode
1. takes a model turn (the engine samples from the episode's ids so far),
2. has its tool calls parsed in the template's format (`data.chat.parse_tool_calls`),
3. hands the turn to its environment, which runs the tools,
4. gets the results appended as `tool` messages (their ids: `data.conversation.observation_ids`),
5. and continues, until it answers without a tool call or a limit is hit.

The ids trained on are exactly the ids the engine sampled, turn after turn; only the text
between turns is encoded, and it carries loss mask 0. Every episode ends with a stop reason:
completed, max_turns (the turn or tool-call limit), max_tokens (a turn reached its length limit,
or the episode its token budget), parse_error, tool_error or timeout.

`EpisodeSampler` is called like `rollout.groups.sample_groups`, so training, the baseline check,
validation and `rftkit eval` run episodes without knowing they are episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from rftkit.data.chat import AssistantTurn, parse_tool_calls, render_prompt
from rftkit.data.conversation import encode_text, observation_ids
from rftkit.rollout.engine import Completion, Engine
from rftkit.rollout.env import Env
from rftkit.rollout.hf import decode
from rftkit.types import Example, Group, Sample, SamplingParams, Shard, Trajectory, Turn

LONGEST_CONTEXT = 1 << 15  # when a tokenizer does not say how long a sequence may be


@dataclass(frozen=True)
class EpisodeLimits:
    """`max_turns` model turns per episode; `max_tokens` completion tokens per episode (model
    turns and what is put in between), None: the tokenizer's context length minus the prompt.
    Episodes that stop for a reason in `masked` get an all-zero loss mask: nothing of them is
    trained on (they still count in their group's baseline)."""

    max_turns: int = 4
    max_tokens: int | None = None
    masked: frozenset[str] = frozenset()


@dataclass
class Episode:
    """One running episode: its environment, the conversation so far and its token record."""

    env: Env
    messages: list[dict[str, Any]]
    prompt_ids: list[int]
    budget: int
    tools: list[dict[str, Any]] | None = None  # shown in the prompt: the environment's, else the row's
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    final: AssistantTurn = AssistantTurn("", [])
    model_turns: int = 0
    finish_reason: str = "stop"
    stop_reason: str | None = None
    version: int = 0
    error: str | None = None

    def context(self) -> list[int]:
        return self.prompt_ids + self.ids

    def add(self, role: str, ids: list[int], logprobs: list[float], trained: bool) -> None:
        self.turns.append(Turn(role, len(self.ids), len(self.ids) + len(ids)))
        self.ids += ids
        self.logprobs += logprobs if trained else [0.0] * len(ids)
        self.mask += [int(trained)] * len(ids)

    def stop(self, reason: str) -> None:
        self.stop_reason = reason


class EpisodeSampler:
    """Draws episodes: `sampler(engine, tokenizer, examples, prompts, n, params, generator=, shard=)`
    returns one Group of `n` episodes per example (`prompts` is not used: an environment's
    `reset` may change the opening conversation, so each episode renders its own). `shard`
    reaches the opening turns; later turns depend on which episodes are still running, so
    across data-parallel ranks an episode's later turns are sampled as a share of that rank's."""

    def __init__(self, make_env: Callable[[], Env], limits: EpisodeLimits, **template_kwargs):
        self.make_env, self.limits, self.template_kwargs = make_env, limits, template_kwargs

    def __call__(self, engine: Engine, tokenizer, examples: list[Example], prompts, group_size: int,
                 params: SamplingParams, *, generator: torch.Generator | None = None,
                 shard: Shard | None = None) -> list[Group]:
        episodes = [self.start(tokenizer, example) for example in examples for _ in range(group_size)]
        try:
            active = [e for e in episodes if e.stop_reason is None]
            completions = self.first_turns(engine, episodes, group_size, params, generator, shard)
            while active:
                for episode, completion in zip(active, completions):
                    self.take_turn(tokenizer, episode, completion)
                active = [e for e in active if e.stop_reason is None]
                if active:
                    drawn = engine.generate([e.context() for e in active], params, n=1, generator=generator)
                    completions = [c[0] for c in drawn]
        finally:
            for episode in episodes:
                episode.env.close()
        return [Group(example, episodes[i * group_size].prompt_ids,
                      [self.sample(tokenizer, e) for e in episodes[i * group_size: (i + 1) * group_size]])
                for i, example in enumerate(examples)]

    def first_turns(self, engine: Engine, episodes: list[Episode], group_size: int, params: SamplingParams,
                    generator, shard: Shard | None = None) -> list[Completion]:
        """The opening turn of every running episode, each distinct prompt sampled n times when
        a group's episodes start alike (the usual case)."""
        active = [e for e in episodes if e.stop_reason is None]
        groups = [episodes[i: i + group_size] for i in range(0, len(episodes), group_size)]
        if len(active) == len(episodes) and all(e.prompt_ids == g[0].prompt_ids for g in groups for e in g):
            drawn = engine.generate([g[0].prompt_ids for g in groups], params, n=group_size, generator=generator,
                                    shard=shard)
            return [c for row in drawn for c in row]
        return [c[0] for c in engine.generate([e.context() for e in active], params, n=1, generator=generator)]

    def start(self, tokenizer, example: Example) -> Episode:
        env = self.make_env()
        try:
            messages = env.reset(example)
        except Exception as err:  # one bad episode never takes the job down
            episode = Episode(env, list(example.prompt_messages), [], 0, error=f"reset: {type(err).__name__}: {err}")
            episode.stop("tool_error")
            return episode
        tools = env.tools or example.tools or None
        prompt = encode_text(tokenizer, render_prompt(tokenizer, messages, tools, **self.template_kwargs))
        budget = self.limits.max_tokens or max(context_length(tokenizer) - len(prompt), 1)
        return Episode(env, messages, prompt, budget, tools)

    def take_turn(self, tokenizer, episode: Episode, completion: Completion) -> None:
        """Record one sampled turn, let the environment answer it, and append the answer."""
        room = episode.budget - len(episode.ids)
        ids, logprobs = completion.token_ids[:room], completion.logprobs[:room]
        episode.add("assistant", list(ids), list(logprobs), trained=True)
        episode.version, episode.model_turns = completion.policy_version, episode.model_turns + 1
        cut = len(ids) < len(completion.token_ids)
        episode.finish_reason = "length" if cut else completion.finish_reason
        turn = parse_tool_calls(decode(tokenizer, ids), call_prefix=f"call_{episode.model_turns}")
        episode.final = turn
        if episode.finish_reason == "length":
            return episode.stop("max_tokens")
        try:
            result = episode.env.step(turn)
        except Exception as err:  # the environment's own failure ends this episode only
            episode.error = f"step: {type(err).__name__}: {err}"
            return episode.stop("tool_error")
        episode.messages.append(turn.message())
        episode.calls += result.calls
        if result.done:
            return episode.stop(result.stop_reason or "completed")
        if episode.model_turns >= self.limits.max_turns:
            return episode.stop("max_turns")
        between = observation_ids(tokenizer, episode.messages, result.messages, episode.tools, **self.template_kwargs)
        episode.messages += result.messages
        if len(episode.ids) + len(between) >= episode.budget:
            return episode.stop("max_tokens")
        episode.add(result.messages[0]["role"] if result.messages else "template", between, [], trained=False)

    def sample(self, tokenizer, episode: Episode) -> Sample:
        stop_reason = episode.stop_reason or "completed"
        mask = (0,) * len(episode.mask) if stop_reason in self.limits.masked else tuple(episode.mask)
        trajectory = Trajectory(tuple(episode.prompt_ids), tuple(episode.ids), tuple(episode.logprobs), mask,
                                tuple(episode.turns), episode.finish_reason, stop_reason, episode.version)
        reward, error = None, episode.error
        try:
            reward = episode.env.reward()
        except Exception as err:
            error = error or f"reward: {type(err).__name__}: {err}"
        return Sample(episode.final.content, list(episode.calls), trajectory=trajectory,
                      messages=list(episode.messages), environment_reward=reward, episode_error=error)


def context_length(tokenizer) -> int:
    length = getattr(tokenizer, "model_max_length", None)
    return length if isinstance(length, int) and 0 < length <= LONGEST_CONTEXT else LONGEST_CONTEXT
