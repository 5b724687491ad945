"""`function`: a trusted Python callable, run in-process — reward functions as TRL and
Predibase users write them.

    {"type": "function", "name": "length", "function": "rewards.py:short_answer"}
    {"type": "function", "name": "length", "function": "mypackage.rewards:short_answer"}

`function` is `MODULE:NAME`, where MODULE is a file (relative to the grader file or job)
or an importable module. The callable takes `(prompt, completion, item)`: the row's prompt
messages, the sample's text, the whole row; and returns a number. It runs with rftkit's
own rights and no sandbox: use it for code you wrote; use `python` for code you did not.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Callable, Literal

from pydantic import Field

from rftkit.errors import RftkitError
from rftkit.graders.base import Grader, GraderFailure, GraderSpec, register
from rftkit.types import Sample


class FunctionSpec(GraderSpec):
    type: Literal["function"]
    function: str = Field(pattern=r"^[^:]+:[A-Za-z_]\w*$", description="MODULE:NAME, e.g. rewards.py:exact")


def load_function(reference: str, base_dir: Path) -> Callable:
    module_name, _, name = reference.rpartition(":")
    path = (base_dir / module_name) if module_name.endswith(".py") else None
    try:
        if path is not None:
            if not path.is_file():
                raise RftkitError(f"function: {path}: no such file", fix="give a path relative to the grader file")
            spec = importlib.util.spec_from_file_location(f"rftkit_reward_{abs(hash(str(path)))}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except RftkitError:
        raise
    except Exception as err:
        raise RftkitError(f"function: importing {module_name} failed: {type(err).__name__}: {err}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise RftkitError(f"function: {module_name} has no callable {name!r}")
    try:
        inspect.signature(function).bind(None, None, None)
    except TypeError:
        raise RftkitError(f"function: {reference} must accept (prompt, completion, item)") from None
    except ValueError:
        pass  # builtins without a signature: let the call decide
    return function


@register("function")
class FunctionGrader(Grader):
    spec_model = FunctionSpec

    def __init__(self, spec: FunctionSpec, context):
        super().__init__(spec, context)
        self.function = load_function(spec.function, Path(context.base_dir))

    def score(self, sample: Sample, item: dict) -> float:
        prompt = item.get("messages", [])
        try:
            return self.function(prompt, sample.output_text, item)
        except Exception as err:
            raise GraderFailure("python_grader_runtime_error", f"{self.spec.function}: {type(err).__name__}: {err}") from None
