"""The whole job (OpenAI's body plus the `rftkit:` block), read from YAML or the REST API with
one line per problem, and its reference table."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from rftkit.config.method import Method
from rftkit.config.options import RftkitOptions
from rftkit.config.sections import Section
from rftkit.errors import RftkitError


class JobSpec(Section):
    model: str = Field(description="A local Hugging Face model directory (or a hub name when online).")
    training_file: str = Field(description="JSONL, parquet or a saved Hugging Face dataset.")
    validation_file: str | None = Field(None, description="Held-out rows for evaluation.")
    seed: int = Field(42, description="Seeds data order, sampling and initialisation.")
    suffix: str | None = Field(None, max_length=64, description="Added to the fine-tuned model's name.")
    metadata: dict[str, str] | None = Field(None, description="Free-form key/value pairs kept with the job.")
    method: Method
    rftkit: RftkitOptions = RftkitOptions()

    @model_validator(mode="after")
    def _grader_or_environment(self) -> "JobSpec":
        reinforcement = self.method.reinforcement
        if reinforcement is not None and reinforcement.grader is None and self.rftkit.environment.factory is None:
            raise ValueError("method.reinforcement.grader is required (it may be left out only when "
                             "rftkit.environment.factory names an environment that defines reward())")
        return self


# ----------------------------------------------------------------------------- loading


def _suggest(key: str, model: type[BaseModel] | None) -> str:
    if model is None:
        return ""
    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(path: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at `path` (for did-you-mean hints)."""
    model: Any = root
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        inner = [a for a in (field.annotation, *get_args(field.annotation)) if isinstance(a, type)]
        model = next((a for a in inner if issubclass(a, BaseModel)), None)
        if model is None:
            return None
    return model


def describe_errors(err: ValidationError, source: str, root: type[BaseModel] | None = None) -> str:
    """One line per problem: `job.yaml: method.reinforcement.grader: field required`."""
    root = root or JobSpec
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            lines.append(f"{source}: {path}: unknown key{_suggest(key, _model_at(e['loc'][:-1], root))}")
        elif e["type"] == "missing":
            lines.append(f"{source}: {path}: required field is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {path or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_job(data: Any, source: str = "<job>") -> JobSpec:
    """Validate a job body (from YAML or the REST API); raise RftkitError naming every problem."""
    if not isinstance(data, dict):
        raise RftkitError(f"{source}: a job spec must be a mapping, got {type(data).__name__}")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as err:
        raise RftkitError(describe_errors(err, source)) from None


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RftkitError(f"{path}: no such file") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise RftkitError(f"{path}{line}: invalid YAML: {problem}") from None


def load_job(path: str | Path) -> JobSpec:
    """Load a job spec from YAML. Relative file and model paths are taken relative to the
    YAML file's folder, so a job runs the same from any working directory."""
    path = Path(path)
    data = read_yaml(path)
    if isinstance(data, dict):
        data = dict(data)
        for key in ("training_file", "validation_file", "model"):
            value = data.get(key)
            if isinstance(value, str) and not Path(value).is_absolute():
                candidate = path.parent / value
                if candidate.exists() or key != "model":
                    # absolute, so that runs, checkpoints and adapters keep pointing at it
                    data[key] = str(candidate.resolve())
    return parse_job(data, str(path))


# ----------------------------------------------------------------------------- documentation


def iter_fields(model: type[BaseModel] = JobSpec, prefix: str = ""):
    """Yield (path, default, description) for every leaf field, in declaration order."""
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        inner = [a for a in (field.annotation, *get_args(field.annotation)) if isinstance(a, type)]
        sub = next((a for a in inner if issubclass(a, BaseModel)), None)
        if sub is not None:
            yield from iter_fields(sub, f"{path}.")
            continue
        default = "(required)" if field.is_required() else field.default
        yield path, default, field.description or ""


def defaults_markdown() -> str:
    """The table in docs/config.md: every field of the job spec, its default and meaning."""
    rows = [
        "# Job spec reference",
        "",
        "Generated from `src/rftkit/config/` by `rftkit config defaults --markdown`; do not edit by hand.",
        "The top level is OpenAI's fine-tuning job body; `rftkit.*` holds everything else.",
        "",
        "| key | default | meaning |",
        "|---|---|---|",
    ]
    for path, default, description in iter_fields():
        shown = "(required)" if default == "(required)" else f"`{default!r}`".replace("|", "\\|")
        rows.append(f"| `{path}` | {shown} | {description.replace('|', '/')} |")
    return "\n".join(rows) + "\n"
