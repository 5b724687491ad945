"""Store rows as the objects of OpenAI's API (the shapes of the openai-python types)."""

from __future__ import annotations

from typing import Any

from rftkit.jobs.models import checkpoint_name
from rftkit.jobs.store import event_id


def page(data: list[dict], has_more: bool, **extra: Any) -> dict:
    return {"object": "list", "data": data, "has_more": has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None, **extra}


def file_object(row: dict) -> dict:
    return {"id": row["id"], "object": "file", "bytes": row["bytes"], "created_at": row["created_at"],
            "filename": row["filename"], "purpose": row["purpose"], "status": "processed", "status_details": None,
            "expires_at": None, "rftkit": {"kind": row.get("kind"), "rows": row.get("rows")}}


def _hyperparameters(method: dict) -> dict:
    block = method.get(method.get("type", "")) or {}
    hp = block.get("hyperparameters") or {}
    return {k: hp.get(k, "auto") for k in ("batch_size", "learning_rate_multiplier", "n_epochs")}


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def _learning_rate(base: Any, multiplier: Any) -> Any:
    """The job's rate as the spec states it: a number, or "auto" (fitted to the model when it runs).

    >>> _learning_rate(1e-5, 2.0), _learning_rate("auto", "auto"), _learning_rate("auto", 3)
    (2e-05, 'auto', 'auto x3')
    """
    numeric = isinstance(multiplier, (int, float)) and not isinstance(multiplier, bool)
    if isinstance(base, (int, float)):
        return base * (multiplier if numeric else 1)
    return f"auto x{multiplier:g}" if numeric and multiplier != 1 else "auto"


def job_settings(spec: dict) -> dict:
    """The settings the dashboard's compare view lays side by side (from the job spec).

    >>> spec = {"seed": 3, "method": {"type": "reinforcement", "reinforcement": {
    ...     "grader": {"type": "string_check", "name": "exact"}, "hyperparameters": {"batch_size": 4,
    ...     "learning_rate_multiplier": 2.0}}}, "rftkit": {"algorithm": "grpo", "group_size": 8,
    ...     "learning_rate": 1e-5, "kl": {"coef": 0.0}, "lora": {"enabled": False}}}
    >>> job_settings(spec)["learning_rate"], job_settings(spec)["grader"]
    (2e-05, 'exact (string_check)')
    """
    method = spec["method"]
    block = method.get(method["type"]) or {}
    hp, options = block.get("hyperparameters") or {}, spec.get("rftkit") or {}
    multiplier = hp.get("learning_rate_multiplier")
    grader = block.get("grader") or {}
    reinforcement = method["type"] == "reinforcement"
    return {
        "method": method["type"],
        "algorithm": options.get("algorithm") if reinforcement else None,
        "group_size": options.get("group_size") if reinforcement else None,
        "learning_rate": _learning_rate(options.get("learning_rate", "auto"), multiplier),
        "batch_size": hp.get("batch_size", "auto"), "n_epochs": hp.get("n_epochs", "auto"),
        "grader": f"{grader.get('name')} ({grader.get('type')})" if grader else None,
        "kl_coef": (options.get("kl") or {}).get("coef"), "lora": bool((options.get("lora") or {}).get("enabled")),
        "seed": spec.get("seed"),
    }


def job_object(job: dict, estimated_finish: int | None = None) -> dict:
    spec, body = job["spec"], job["body"]
    method = _drop_none(spec["method"])
    return {
        "id": job["id"], "object": "fine_tuning.job", "created_at": job["created_at"], "error": job["error"],
        "fine_tuned_model": job["fine_tuned_model"], "finished_at": job["finished_at"],
        "hyperparameters": _hyperparameters(method), "model": body["model"], "organization_id": job["project"],
        "result_files": job.get("result_files") or [], "seed": spec["seed"], "status": job["status"],
        "trained_tokens": job.get("trained_tokens"),
        "training_file": body["training_file"], "validation_file": body.get("validation_file"),
        "estimated_finish": estimated_finish, "integrations": [], "metadata": spec.get("metadata"), "method": method,
        "suffix": spec.get("suffix"),
        "rftkit": {"steps_done": job["steps_done"], "total_steps": job["total_steps"], "attempts": job["attempts"],
                   "started_at": job["started_at"], "settings": job_settings(spec)},
    }


def event_object(row: dict) -> dict:
    return {"id": event_id(row["seq"]), "object": "fine_tuning.job.event", "created_at": row["created_at"],
            "level": row["level"], "message": row["message"], "data": row["data"], "type": row["type"],
            "step": row["step"]}


def checkpoint_id(job: dict, step: int) -> str:
    return f"ftckpt_{job['id'].removeprefix('ftjob-')}_{step}"


def checkpoint_object(job: dict, found: dict) -> dict:
    metrics = {"step": float(found["step"]), **{k: v for k, v in found["metrics"].items()
                                                 if isinstance(v, (int, float)) and k != "step"}}
    return {"id": checkpoint_id(job, found["step"]), "object": "fine_tuning.job.checkpoint",
            "created_at": found["created_at"], "fine_tuned_model_checkpoint": checkpoint_name(job, found["step"]),
            "fine_tuning_job_id": job["id"], "metrics": metrics, "step_number": found["step"]}


def model_object(name: str, created: int, owner: str) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": owner}
