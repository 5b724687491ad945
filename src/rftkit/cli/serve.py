"""`rftkit serve` and `rftkit keys`: the jobs service and its API keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from rftkit.cli.common import out

DATA_DIR = typer.Option(None, "--data-dir", envvar="RFTKIT_DATA_DIR", show_default=False,
                        help="Files, runs, checkpoints, the SQLite database, base models in models/ (default: ~/.rftkit).")
DB = typer.Option(None, "--db", envvar="RFTKIT_DB", help="Database URL, e.g. postgresql://user@host/db (default: SQLite in --data-dir).")

keys_app = typer.Typer(help="API keys for `rftkit serve` (stored hashed; shown once).", no_args_is_help=True)


def data_dir_or_default(data_dir: Path | None) -> Path:
    return data_dir or Path.home() / ".rftkit"


def _engine(data_dir: Path | None, db: str | None):
    from rftkit.jobs.db import database_url, open_engine

    data_dir = data_dir_or_default(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return open_engine(database_url(data_dir, db))


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every one)."),
    port: int = typer.Option(8000, help="TCP port."),
    data_dir: Optional[Path] = DATA_DIR,
    db: Optional[str] = DB,
    workers: int = typer.Option(1, min=0, help="Jobs that train at the same time, each in its own process (0: accept jobs, run none)."),
    model_dir: list[Path] = typer.Option(
        [], "--model-dir", help="A directory whose models every project may name by path (base models, a "
                                "trainer's engine-weights folder for engine openai); repeatable. Otherwise paths "
                                "resolve only under DATA_DIR/models and the project's own jobs."),
    grader_dir: list[Path] = typer.Option(
        [], "--grader-dir", help="A directory whose files every project's graders may name by relative path "
                                 "(SQLite databases, reward models); repeatable. Otherwise graders read only "
                                 "the project's uploads (purpose user_data)."),
    environment_dir: list[Path] = typer.Option(
        [], "--environment-dir", help="A directory of multi-turn environments (docs/environments.md) that jobs "
                                      "may name by relative path in rftkit.environment.factory; repeatable. They "
                                      "run in the job's worker process: register only code you trust. Otherwise "
                                      "jobs with an environment are refused."),
    allow_grader_host: list[str] = typer.Option(
        [], "--allow-grader-host", envvar="RFTKIT_ALLOW_GRADER_HOSTS", show_default=False,
        help="A host (HOST or HOST:PORT) or network (CIDR, e.g. 10.0.0.0/8) that graders over the API may reach "
             "although it is not public (loopback, private, link-local); repeatable; the variable, space-separated, "
             "is used when no flag is given. Otherwise endpoint and judge graders reach only public addresses "
             "(docs/security.md)."),
    max_upload_bytes: int = typer.Option(512 * 2**20, min=1, envvar="RFTKIT_MAX_UPLOAD_BYTES",
                                         help="Largest uploaded file; a larger upload answers 413 as soon as "
                                              "its body passes the limit."),
    ray: Optional[str] = typer.Option(
        None, "--ray", metavar="ADDRESS",
        help="Run reinforcement jobs' rollouts and grading as Ray actors (docs/scale.md): on the cluster at ADDRESS "
             "(HOST:PORT of its head, ray://HOST:PORT, or auto), or 'local': each job starts a local Ray instance "
             "unless $RAY_ADDRESS names a cluster. Needs the `ray` extra of rftkit; supervised jobs are unchanged."),
    nproc: int = typer.Option(
        1, "--nproc", min=1, help="Train each reinforcement job as N data-parallel ranks (docs/scale.md): processes "
        "on this machine, or with --ray the ranks as Ray actors on the cluster; a job with fewer prompts per step "
        "gets one rank per prompt. Each of the --workers jobs takes N ranks."),
) -> None:
    """Serve OpenAI's fine-tuning API (files, jobs, graders, models, chat) and the dashboard."""
    import uvicorn

    from rftkit.api import ServiceSettings, create_app
    from rftkit.jobs.keys import ENV_KEY, any_keys, create_key

    settings = ServiceSettings(data_dir=data_dir_or_default(data_dir), db=db, workers=workers,
                               model_dirs=tuple(d.resolve() for d in model_dir),
                               grader_dirs=tuple(d.resolve() for d in grader_dir),
                               environment_dirs=tuple(d.resolve() for d in environment_dir),
                               grader_hosts=tuple(allow_grader_host),
                               max_upload_bytes=max_upload_bytes, ray=ray, nproc=nproc)
    app = create_app(settings)
    engine = app.state.service.store.engine
    if not any_keys(engine) and not os.environ.get(ENV_KEY):
        key, _ = create_key(engine, name="first key, made by rftkit serve")
        out.print(f"no API keys yet: created one for project 'default' (shown once):\n  {key}")
        out.print(f"dashboard: http://{host}:{port}/#key={key}")
    else:
        out.print(f"dashboard: http://{host}:{port}/ (enter an API key; `rftkit keys create` makes one)")
    out.print(f"OpenAI base_url: http://{host}:{port}/v1 · data in {escape(str(settings.data_dir))}")
    if ray:
        what = f"their {nproc} trainer ranks" if nproc > 1 else "rollouts and grading"
        out.print(f"reinforcement jobs place {what} on Ray ({escape(ray)})")
    elif nproc > 1:
        out.print(f"reinforcement jobs train as {nproc} data-parallel ranks each")
        cores = os.cpu_count() or 1
        if nproc * max(workers, 1) > cores:
            out.print(f"[yellow]warning[/]: {workers} jobs of {nproc} ranks are more processes than this machine's "
                      f"{cores} cores: they will share cores; --nproc {max(1, cores // max(workers, 1))} is the most "
                      "that pays", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


@keys_app.command("create")
def keys_create(
    project: str = typer.Option("default", help="The project the key sees files, jobs and models of."),
    name: str = typer.Option("", help="A note to recognise the key by."),
    data_dir: Optional[Path] = DATA_DIR,
    db: Optional[str] = DB,
) -> None:
    """Create a key and print it (only its hash is stored: copy it now)."""
    from rftkit.jobs.keys import create_key

    key, info = create_key(_engine(data_dir, db), project, name)
    out.print(f"created key {info.id} for project {escape(project)!r}")
    print(key)


@keys_app.command("list")
def keys_list(data_dir: Optional[Path] = DATA_DIR, db: Optional[str] = DB) -> None:
    """List keys: id, project, name, created, revoked."""
    import time

    from rich.table import Table

    from rftkit.jobs.keys import list_keys

    table = Table("id", "project", "name", "created", "revoked")
    for info in list_keys(_engine(data_dir, db)):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.created_at))
        revoked = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.revoked_at)) if info.revoked_at else ""
        table.add_row(info.id, info.project, info.name, when, revoked)
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (from `rftkit keys list`)."),
                data_dir: Optional[Path] = DATA_DIR, db: Optional[str] = DB) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    from rftkit.jobs.keys import revoke_key

    revoke_key(_engine(data_dir, db), key_id)
    out.print(f"revoked key {key_id}")
