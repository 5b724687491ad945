"""② Environments: what a multi-turn episode talks to.

The native API, for full control (single-turn grading is its trivial case: one turn, done):

    class Env:
        tools: list[dict]                                   # OpenAI function tools shown in the prompt
        def reset(self, example) -> list[dict]              # the conversation the episode starts from
        def step(self, turn: AssistantTurn) -> StepResult   # messages to append, done, stop reason
        def reward(self) -> float | None                    # the episode's reward, when it decides it

TRL's `environment_factory` contract, which users already write, is adapted onto it by
`ToolEnv`: a class with a no-argument constructor; `reset(**row)` receives the dataset row's
fields and may return text that is appended to the first user turn; every other public method
with type hints and a Google-style docstring (`Args:`) is a tool, its JSON schema generated from
the signature; an optional `reward(self) -> float` is the reward.

    rftkit:
      environment:
        factory: envs/calculator.py:Calculator     # relative to the job file, or package.module:Class

A tool runs in the trainer's process with a time limit: in the main thread an interval timer
interrupts it (a Python loop or a sleep stops at once); elsewhere it runs in a thread that is
abandoned when the limit passes. Errors it raises become its result (or end the episode).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rftkit.data.chat import AssistantTurn
from rftkit.errors import RftkitError
from rftkit.types import Example

RESERVED = {"reset", "reward", "close", "step"}


@dataclass
class StepResult:
    """What an environment answers to one model turn: `messages` to append before the next turn
    (tool results, a user's reply), whether the episode is `done`, and if so why (`stop_reason`,
    one of `rftkit.types.STOP_REASONS`). `calls` records each tool call it ran, with its result."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    stop_reason: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)


class Env:
    """The native environment API (see the module docstring). Subclass it for full control."""

    tools: list[dict[str, Any]] = []

    def reset(self, example: Example) -> list[dict[str, Any]]:
        return list(example.prompt_messages)

    def step(self, turn: AssistantTurn) -> StepResult:
        return StepResult(done=True, stop_reason="completed")

    def reward(self) -> float | None:
        return None

    def close(self) -> None:
        """Release what the episode holds."""


# ----------------------------------------------------------------------------- tools


class ToolTimeout(Exception):
    pass


def tool_schema(method: Callable, owner: str = "") -> dict[str, Any]:
    """An OpenAI function tool for a typed, documented method (the same schema TRL builds).

    >>> class Calc:
    ...     def mul(self, a: int, b: int) -> int:
    ...         '''Multiply two integers.
    ...
    ...         Args:
    ...             a: The first factor.
    ...             b: The second factor.
    ...         '''
    ...         return a * b
    >>> tool_schema(Calc().mul)["function"]["parameters"]["required"]
    ['a', 'b']
    """
    from transformers.utils import get_json_schema

    try:
        schema = get_json_schema(method)
    except Exception as err:  # transformers raises its own parsing exceptions
        name = f"{owner}.{method.__name__}" if owner else method.__name__
        raise RftkitError(f"tool {name}: its signature cannot become a JSON schema: {err}",
                          fix="give every argument a type hint and document it under Args: in a "
                              "Google-style docstring; make helpers private (a leading underscore)") from None
    schema["function"].pop("return", None)  # not part of OpenAI's function tools
    return schema


def call_with_timeout(function: Callable, arguments: dict, seconds: float) -> Any:
    """`function(**arguments)`, stopped with ToolTimeout after `seconds`."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        def expire(signum, frame):
            raise ToolTimeout

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return function(**arguments)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    box: dict[str, Any] = {}

    def run():
        try:
            box["value"] = function(**arguments)
        except BaseException as err:  # handed to the caller
            box["error"] = err

    worker = threading.Thread(target=run, daemon=True, name="rftkit-tool")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise ToolTimeout
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclass(frozen=True)
class ToolLimits:
    """How tools run: seconds per call, calls per episode, and what a failure does (`continue`:
    the error is the tool's result and the model goes on; `end`: the episode stops)."""

    timeout_s: float = 10.0
    max_tool_calls: int = 8
    on_tool_error: str = "continue"
    on_parse_error: str = "end"


def _result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


class ToolEnv(Env):
    """A TRL-style environment class (reset + typed tool methods + optional reward) as an Env."""

    def __init__(self, instance: Any, limits: ToolLimits, tools: dict[str, Callable] | None = None):
        self.instance, self.limits = instance, limits
        self.methods = tools if tools is not None else public_tools(instance)
        owner = type(instance).__name__
        self.tools = [tool_schema(method, owner) for method in self.methods.values()]
        self.calls_made = 0

    def reset(self, example: Example) -> list[dict[str, Any]]:
        self.calls_made = 0
        reset = self.instance.reset
        parameters = inspect.signature(reset).parameters
        if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            fields = dict(example.item)
        else:
            fields = {k: v for k, v in example.item.items() if k in parameters}
        extra = reset(**fields)
        messages = [dict(m) for m in example.prompt_messages]
        if extra:
            first = next((m for m in messages if m.get("role") == "user"), None)
            if first is None:
                messages.append({"role": "user", "content": str(extra)})
            else:
                first["content"] = f"{first.get('content') or ''}\n\n{extra}".lstrip("\n")
        return messages

    def step(self, turn: AssistantTurn) -> StepResult:
        if turn.parse_error is not None:
            return self._malformed(turn.parse_error)
        if not turn.tool_calls:
            return StepResult(done=True, stop_reason="completed")
        unknown = [c["function"]["name"] for c in turn.tool_calls if c["function"]["name"] not in self.methods]
        if unknown:
            return self._malformed(f"unknown tool {unknown[0]!r} (tools: {', '.join(self.methods) or 'none'})")
        result = StepResult()
        for call in turn.tool_calls:
            if self.calls_made >= self.limits.max_tool_calls:
                return StepResult(result.messages, True, "max_turns", result.calls)
            self.calls_made += 1
            record, ended = self._run(call)
            result.calls.append(record)
            result.messages.append({"role": "tool", "tool_call_id": call["id"], "name": record["name"],
                                    "content": record["result"]})
            if ended is not None:
                return StepResult(result.messages, True, ended, result.calls)
        return result

    def _malformed(self, problem: str) -> StepResult:
        if self.limits.on_parse_error == "end":
            return StepResult(done=True, stop_reason="parse_error")
        return StepResult([{"role": "user", "content": f"error: {problem}"}])

    def _run(self, call: dict) -> tuple[dict, str | None]:
        """(the call's record, the stop reason when it ends the episode)."""
        name = call["function"]["name"]
        record = {"id": call["id"], "type": "function", "name": name,
                  "arguments": call["function"]["arguments"], "error": False}
        try:
            arguments = json.loads(call["function"]["arguments"])
            inspect.signature(self.methods[name]).bind(**arguments)
            record["result"] = _result_text(call_with_timeout(self.methods[name], arguments, self.limits.timeout_s))
            return record, None
        except ToolTimeout:
            record.update(result=f"error: {name} took longer than {self.limits.timeout_s:g} s", error=True)
            return record, "timeout"
        except Exception as err:  # the tool's own failure (or arguments that do not fit it) is its result
            record.update(result=f"error: {type(err).__name__}: {err}", error=True)
            return record, "tool_error" if self.limits.on_tool_error == "end" else None

    def reward(self) -> float | None:
        method = getattr(self.instance, "reward", None)
        return None if method is None else float(method())

    def close(self) -> None:
        close = getattr(self.instance, "close", None)
        if callable(close):
            close()


def public_tools(instance: Any) -> dict[str, Callable]:
    """The methods of a TRL-style environment that are tools: public, callable, not reserved."""
    return {name: getattr(instance, name) for name in dir(type(instance))
            if not name.startswith("_") and name not in RESERVED and callable(getattr(instance, name))}


# ----------------------------------------------------------------------------- factories


def load_factory(reference: str, base_dir: Path | None) -> type:
    """The class a job names as `path/to/env.py:ClassName` (relative to `base_dir`, the job
    file's folder) or `package.module:ClassName`."""
    where = "rftkit.environment.factory"
    module_name, sep, class_name = reference.rpartition(":")
    if not sep or not module_name or not class_name:
        raise RftkitError(f"{where}: {reference!r} is not MODULE:CLASS",
                          fix='write "path/to/env.py:ClassName" or "package.module:ClassName"')
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        path = Path(module_name).expanduser()
        path = path if path.is_absolute() else (base_dir or Path.cwd()) / path
        if not path.is_file():
            raise RftkitError(f"{where}: {path} does not exist", fix="a path relative to the job file, or absolute")
        module = _import_file(path, where)
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as err:
            raise RftkitError(f"{where}: module {module_name!r} does not import: {type(err).__name__}: {err}",
                              fix="install it, or name the file: path/to/env.py:ClassName") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise RftkitError(f"{where}: {module_name} has no class {class_name!r}",
                          fix=f"classes there: {', '.join(n for n, v in vars(module).items() if isinstance(v, type)) or 'none'}")
    if not callable(getattr(cls, "reset", None)) and not issubclass(cls, Env):
        raise RftkitError(f"{where}: class {class_name} has no reset method",
                          fix="define reset(self, **row) -> str | None (TRL's environment_factory contract)")
    return cls


def _import_file(path: Path, where: str):
    name = f"rftkit_env_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise RftkitError(f"{where}: {path} does not import: {type(err).__name__}: {err}") from None
    return module


def env_maker(cls: type, limits: ToolLimits) -> Callable[[], Env]:
    """A function that makes one fresh Env per episode from a factory class."""
    if issubclass(cls, Env):
        return cls
    ToolEnv(_construct(cls), limits)  # fail now, with the tool's name, rather than mid-rollout
    return lambda: ToolEnv(_construct(cls), limits)


def _construct(cls: type) -> Any:
    try:
        return cls()
    except TypeError as err:
        raise RftkitError(f"rftkit.environment.factory: {cls.__name__}() failed: {err}",
                          fix="an environment class takes no constructor arguments (read settings in reset)") from None


def defines_reward(cls: type) -> bool:
    return callable(getattr(cls, "reward", None)) and getattr(cls, "reward") is not Env.reward
