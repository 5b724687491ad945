"""Model names the service understands, and the directories they stand for.

A fine-tuned model is named as OpenAI names them, `ft:<base>:<project>:<suffix>:<job id>`,
and each of its checkpoints `ft:…:<job id>:ckpt-step-<N>`. Base models are local
directories: a name under DATA_DIR/models/, or a path on the server.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path

from rftkit.errors import RftkitError
from rftkit.jobs.states import TERMINAL, JobConflict
from rftkit.jobs.store import NotFound, Store

CHECKPOINT_SUFFIX = re.compile(r":ckpt-step-(\d+)$")
MAX_NAME_CHARS = 1024  # a model name or path, as the API takes it
MAX_PART_BYTES = 255  # one path component: NAME_MAX of Linux file systems
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# a Hugging Face hub id, `org/name`: anything else with a slash would be a path relative to the worker
HUB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
MODELS_FOLDER = "DATA_DIR/models"  # as messages name it: the server's own paths stay out of answers


class ModelNotDeletable(RftkitError):
    """A model the API may not delete: a base model (HTTP 403)."""


def check_model_name(name: str, field: str = "model") -> str:
    """`name` when it can name a model or a model folder; RftkitError (400) when no file name can
    be it: empty, control characters, over MAX_NAME_CHARS, or a path part over MAX_PART_BYTES.
    Checked before the name reaches the file system, which would fail with an OSError.

    >>> check_model_name("ft:tiny:alpha::ftjob-1")
    'ft:tiny:alpha::ftjob-1'
    """
    if not name or len(name) > MAX_NAME_CHARS or CONTROL.search(name):
        raise RftkitError(f"{field}: not a model name (1 to {MAX_NAME_CHARS} characters, no control characters)",
                          fix="name a model from GET /v1/models")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES for part in name.split("/")):
        raise RftkitError(f"{field}: a part of the name between slashes is over {MAX_PART_BYTES} bytes, "
                          "longer than any file name", fix="name a model from GET /v1/models")
    return name


def fine_tuned_name(job: dict) -> str:
    base = Path(str(job["spec"]["model"]).rstrip("/")).name or "model"
    if base.startswith("ft:") or ":" in base:
        base = base.split(":")[1] if base.startswith("ft:") else base.replace(":", "-")
    suffix = job["spec"].get("suffix") or ""
    return f"ft:{base}:{job['project']}:{suffix}:{job['id']}"


def checkpoint_name(job: dict, step: int) -> str:
    return f"{fine_tuned_name(job)}:ckpt-step-{step}"


def base_model_dir(name: str, data_dir: Path) -> Path | None:
    """A base model's directory, or None when there is none by that name."""
    check_model_name(name)
    named = data_dir / "models" / name
    if "/" not in name and name not in (".", "..") and named.is_dir():  # "." would be the models folder
        return named.resolve()
    path = Path(name)
    if path.is_dir() and ((path / "config.json").exists() or (path / "adapter_config.json").exists()):
        return path.resolve()
    return None


def local_models(data_dir: Path) -> list[str]:
    folder = data_dir / "models"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def fine_tuned_dir(store: Store, project: str, name: str) -> Path:
    """The model directory behind an `ft:` name (a whole run or one checkpoint)."""
    job_id = next((part for part in name.split(":") if part.startswith("ftjob-")), None)
    if job_id is None:
        raise NotFound(f"no model {name!r}")
    job = store.job(job_id, project)
    step = CHECKPOINT_SUFFIX.search(name)
    run_dir = Path(job["run_dir"])
    if step is None:
        if name != fine_tuned_name(job) or job["fine_tuned_model"] is None or not (run_dir / "model").is_dir():
            raise NotFound(f"no model {name!r}" + ("" if name != fine_tuned_name(job) else
                                                   f"; job {job_id} is {job['status']}, try one of its checkpoints"))
        return run_dir / "model"
    folder = run_dir / f"checkpoint-{step.group(1)}" / "model"
    if name != checkpoint_name(job, int(step.group(1))) or not folder.is_dir():
        raise NotFound(f"no model {name!r} (checkpoints are pruned as training goes; list them on the job)")
    return folder


def readable_by(store: Store, project: str, folder: Path, data_dir: Path, shared: tuple[Path, ...]) -> bool:
    """Whether `project` may load the model directory `folder` by its path. Inside the data
    directory: the service's base models (DATA_DIR/models) and the project's own jobs
    (DATA_DIR/jobs/<its job>/...), nothing else, whatever the operator shares; outside it, a
    directory the operator shares (`rftkit serve --model-dir`). Links are followed first."""
    folder, data_dir = folder.resolve(), data_dir.resolve()
    if not folder.is_relative_to(data_dir):
        return any(folder.is_relative_to(Path(d).resolve()) for d in shared)
    if folder.is_relative_to(data_dir / "models"):
        return True
    jobs = data_dir / "jobs"
    if not folder.is_relative_to(jobs) or folder == jobs:
        return False
    try:
        store.job(folder.relative_to(jobs).parts[0], project)
    except NotFound:
        return False
    return True


def resolve_model(store: Store, project: str, name: str, data_dir: Path, shared: tuple[Path, ...] = ()) -> Path | str:
    """What to load for `name`: a directory, or a hub name (with a slash) passed through. A path
    resolves only where `readable_by` allows."""
    check_model_name(name)
    if name.startswith("ft:"):
        return fine_tuned_dir(store, project, name)
    found = base_model_dir(name, data_dir)
    if found is not None:
        if not readable_by(store, project, found, data_dir, shared):
            raise NotFound(f"no model {name!r} that this project may load",
                           fix=f"put base models under {MODELS_FOLDER}, or ask the operator to share their folder "
                               "with `rftkit serve --model-dir`")
        return found
    if HUB_NAME.fullmatch(name) and ".." not in name:
        return name  # a hub name: the worker loads it when online
    raise NotFound(f"no model {name[:200]!r}", fix=f"name a directory under {MODELS_FOLDER}, an absolute path "
                                                  "to a Hugging Face model directory, a hub id (org/name), or an "
                                                  "ft: model")


def jobs_based_on(store: Store, project: str, folder: Path) -> list[str]:
    """Ids of the project's jobs whose base model lies in `folder`, whatever their status: a run
    loads its base when it starts or resumes, and a LoRA adapter keeps pointing at it after."""
    inside = folder.resolve()
    return [job_id for job_id, model, _ in store.jobs_by_base_model(project)
            if Path(model).is_absolute() and Path(model).resolve().is_relative_to(inside)]


def _remove_folder(folder: Path, name: str) -> None:
    """Move the folder aside, then remove it: the rename is atomic, so of two deletes racing
    one removes the weights and the other finds nothing (NotFound), never a half-removed tree."""
    doomed = folder.with_name(f".{folder.name}.deleting-{secrets.token_hex(6)}")
    try:
        folder.rename(doomed)
    except FileNotFoundError:
        raise NotFound(f"The model '{name}' does not exist") from None
    shutil.rmtree(doomed)


def delete_model(store: Store, project: str, name: str, data_dir: Path) -> None:
    """Delete a fine-tuned model's or a checkpoint's weights (the job and its metrics stay).

    Base models answer ModelNotDeletable; checkpoints of a job that may still resume from
    them, and models other jobs are based on, JobConflict."""
    check_model_name(name)
    if not name.startswith("ft:"):
        if base_model_dir(name, data_dir) is not None or name in dict(store.base_models(project)):
            raise ModelNotDeletable(f"{name!r} is a base model; only fine-tuned models (ft:...) can be deleted",
                                    fix=f"remove it from {MODELS_FOLDER} on the server")
        raise NotFound(f"The model '{name}' does not exist")
    folder = fine_tuned_dir(store, project, name)
    job = store.job(next(part for part in name.split(":") if part.startswith("ftjob-")), project)
    if job["status"] not in TERMINAL:
        raise JobConflict(f"job {job['id']} is {job['status']} and may resume from its checkpoints",
                          fix="cancel the job, or wait for it to finish")
    dependents = jobs_based_on(store, project, folder)
    if dependents:
        raise JobConflict(f"{name!r} is the base model of job(s) {', '.join(dependents)}, which load its weights "
                          "(and whose LoRA adapters point at them)", fix="keep it while those jobs are needed")
    _remove_folder(folder, name)
