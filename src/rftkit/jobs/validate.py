"""The `validating_files` step: check a job's data against its grader before it is queued,
and write the job spec its worker runs."""

from __future__ import annotations

import json
from pathlib import Path

from rftkit.config import parse_job
from rftkit.resolved import resolve_reinforcement, resolve_supervised
from rftkit.data.validate import check_dataset
from rftkit.errors import RftkitError
from rftkit.graders.network import NetworkPolicy
from rftkit.graders.templates import item_fields


PLAN_FILE = "plan.json"  # beside job.yaml: the resolved steps and batch size


def _rows(path: str, purpose: str, required: set[str], name: str) -> int:
    checked = check_dataset(path, purpose, required_fields=required)
    if checked.errors:
        shown = "; ".join(str(p).replace(path, name) for p in checked.errors[:5])
        more = f" (and {len(checked.errors) - 5} more)" if len(checked.errors) > 5 else ""
        raise RftkitError(f"{len(checked.errors)} problem(s) for a {purpose} job: {shown}{more}")
    return len(checked.examples)


def validate_job(job: dict, data_dir: Path) -> int:
    """Check the job's files; write DATA_DIR/jobs/<id>/job.yaml and plan.json; return the run's total steps."""
    spec = parse_job(job["spec"], job["id"])
    purpose = spec.method.type
    grader = spec.method.reinforcement.grader if spec.method.reinforcement else None
    required = item_fields(grader) if grader else set()
    body = job["body"]
    rows = _rows(spec.training_file, purpose, required, body["training_file"])
    if spec.validation_file:
        _rows(spec.validation_file, purpose, required, body["validation_file"])
    # the plan's length does not depend on the model's size (only the learning rate does)
    resolve = resolve_reinforcement if purpose == "reinforcement" else resolve_supervised
    plan = resolve(spec, rows, parameters=None)
    folder = Path(job["run_dir"]).parent
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.yaml").write_text(json.dumps(job["spec"], indent=1) + "\n")  # JSON is YAML
    # what launching it needs to know (`rftkit serve --nproc` gives no more ranks than prompts a step)
    (folder / PLAN_FILE).write_text(json.dumps({"total_steps": plan.total_steps, "batch_size": plan.batch_size}))
    return plan.total_steps


# ----------------------------------------------------------------------------- at creation


def service_function_problems(spec: object, path: str = "grader") -> list[str]:
    """`function` graders run in-process with the service's rights; over the API only rftkit's own.

    >>> service_function_problems({"type": "multi", "graders": {"a": {"type": "function", "function": "os:system"}}})
    ["grader.graders.a.function: 'os:system' — over the API, function graders may only name rftkit's own (rftkit.*); use a python grader, which runs sandboxed"]
    """
    found = []
    if isinstance(spec, dict):
        if spec.get("type") == "function" and not str(spec.get("function", "")).startswith("rftkit."):
            found.append(f"{path}.function: {spec.get('function')!r} — over the API, function graders may only "
                         "name rftkit's own (rftkit.*); use a python grader, which runs sandboxed")
        for key, value in spec.items():
            found += service_function_problems(value, f"{path}.{key}")
    elif isinstance(spec, list):
        for index, value in enumerate(spec):
            found += service_function_problems(value, f"{path}[{index}]")
    return found


def _file_path(store, project: str, body: dict, field: str, method: str) -> str | None:
    from rftkit.jobs.store import NotFound

    file_id = body.get(field)
    if file_id is None:
        return None
    try:
        row = store.file(project, str(file_id))
    except NotFound:
        raise RftkitError(f"{field}: no file {file_id!r}", fix="upload it with purpose fine-tune first") from None
    if row["purpose"] != "fine-tune":
        raise RftkitError(f"{field}: {file_id} ({row['filename']}) is a {row['purpose']} file",
                          fix="upload training data with purpose fine-tune")
    if row["kind"] and row["kind"] != method:
        shape = "end with the user's turn" if method == "reinforcement" else "end with the assistant's answer"
        raise RftkitError(f"{field}: {file_id} ({row['filename']}) holds {row['kind']} rows, but a {method} job "
                          f"needs rows that {shape}")
    return row["path"]


def service_environment(factory: str, environment_dirs: tuple[Path, ...]) -> str:
    """A job's `rftkit.environment.factory` over the API, as the absolute file it names: only
    a file inside a directory the operator registered (`rftkit serve --environment-dir`)."""
    where = "rftkit.environment.factory"
    if not environment_dirs:
        raise RftkitError(f"{where}: this server runs no environments: an environment is code, run in the "
                          "job's worker with the worker's rights", fix="ask the operator to register a directory "
                          "of environments (rftkit serve --environment-dir DIR), or train with rftkit train")
    module, sep, name = factory.rpartition(":")
    if not sep or not module.endswith(".py") or Path(module).is_absolute() or ".." in Path(module).parts:
        raise RftkitError(f"{where}: over the API, name a file inside the operator's environment directories, "
                          "as RELATIVE/PATH.py:ClassName", fix="no absolute paths, no .., no module names")
    for root in environment_dirs:
        path = (root / module).resolve()
        if path.is_file() and path.is_relative_to(root.resolve()):
            return f"{path}:{name}"
    raise RftkitError(f"{where}: no file {module} in the server's environment directories")


def service_engine(options: dict, network: NetworkPolicy) -> None:
    """An `openai` engine over the API reaches only hosts the grader rule admits, and may not
    name one of the server's environment variables as its key (they are the operator's secrets)."""
    engine_options = options.get("engine_options") if isinstance(options.get("engine_options"), dict) else {}
    if engine_options.get("api_key_env"):
        raise RftkitError("rftkit.engine_options.api_key_env: over the API a job cannot name one of the server's "
                          "environment variables", fix="leave it out: the rollout server must take no key, or run "
                          "the job with rftkit train")
    if isinstance(engine_options.get("base_url"), str):
        network.check_url(engine_options["base_url"], "rftkit.engine_options.base_url")


def prepare_job(store, project: str, body: dict, data_dir: Path, grader_dirs: tuple[Path, ...] = (),
                model_dirs: tuple[Path, ...] = (), *, network: NetworkPolicy = NetworkPolicy(),
                environment_dirs: tuple[Path, ...] = ()) -> dict:
    """Turn a POST /v1/fine_tuning/jobs body into the store's job values, or RftkitError (400).
    `network`: the hosts its graders may reach (the operator's --allow-grader-host);
    `environment_dirs`: where the environments it may name live (--environment-dir)."""
    from rftkit.graders import GraderContext
    from rftkit.graders.validate import validate_grader
    from rftkit.jobs.grader_files import for_project
    from rftkit.jobs.models import resolve_model
    from rftkit.jobs.store import NotFound, new_id

    if not isinstance(body, dict) or "training_file" not in body or "model" not in body:
        raise RftkitError("the body needs model and training_file (and method)")
    spec = dict(body)
    spec.setdefault("method", {"type": "supervised"})
    method = spec["method"].get("type") if isinstance(spec["method"], dict) else None
    for field in ("training_file", "validation_file"):
        spec[field] = _file_path(store, project, body, field, method)
    reinforcement = spec["method"].get("reinforcement") if isinstance(spec["method"], dict) else None
    if isinstance(reinforcement, dict) and isinstance(reinforcement.get("grader"), dict):
        grader = for_project(reinforcement["grader"], store, project, data_dir, grader_dirs,
                             where="method.reinforcement.grader")
        spec["method"] = {**spec["method"], "reinforcement": {**reinforcement, "grader": grader}}
    options = spec.get("rftkit")
    if isinstance(options, dict):
        service_engine(options, network)
        environment = options.get("environment")
        if isinstance(environment, dict) and isinstance(environment.get("factory"), str):
            environment = {**environment, "factory": service_environment(environment["factory"], environment_dirs)}
            spec["rftkit"] = {**options, "environment": environment}
    try:
        spec["model"] = str(resolve_model(store, project, str(body["model"]), data_dir, model_dirs))
    except NotFound as err:
        raise RftkitError(f"model: {err}") from None
    parsed = parse_job({k: v for k, v in spec.items() if v is not None}, "body")
    if parsed.method.reinforcement is not None and parsed.method.reinforcement.grader is not None:
        grader = parsed.method.reinforcement.grader
        problems = service_function_problems(grader) or validate_grader(
            grader, GraderContext(base_dir=Path("/nonexistent"), network=network), source="method.reinforcement.grader")
        if problems:
            raise RftkitError("; ".join(problems))
    job_id = new_id("ftjob-")
    return {"id": job_id, "body": body, "spec": parsed.model_dump(mode="json"),
            "run_dir": str((data_dir / "jobs" / job_id / "run").resolve())}
