"""The FastAPI application: settings, the service objects it holds, and its routers."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from rftkit.api import errors
from rftkit.api.completions import Adapters
from rftkit.graders.network import NetworkPolicy
from rftkit.api.limits import BodyLimit
from rftkit.jobs.db import database_url, open_engine
from rftkit.jobs.store import Store
from rftkit.jobs.supervisor import Supervisor
from rftkit.serving.client import ServingClient

# room for a multipart upload's boundaries, part headers and small fields (purpose) around a file
# of max_upload_bytes
FORM_OVERHEAD_BYTES = 64 * 2**10


class ServiceSettings(BaseModel):
    """Everything `rftkit serve` can be told; the defaults are those of the command."""

    model_config = ConfigDict(frozen=True)
    data_dir: Path = Field(description="Files, runs, checkpoints, the SQLite database, models/ for base models.")
    db: str | None = Field(None, description="A database URL (postgresql://...); default: SQLite in data_dir.")
    workers: int = Field(1, ge=0, description="Jobs that train at the same time, each in its own process "
                                              "(0: accept and validate jobs, but leave them queued).")
    poll_seconds: float = Field(0.5, gt=0, description="How often the supervisor looks at jobs and their logs.")
    max_upload_bytes: int = Field(512 * 2**20, ge=1, description="Largest file accepted by POST /v1/files (and "
                                                                 "feedback uploads); larger bodies answer 413 "
                                                                 "as soon as they pass it.")
    model_dirs: tuple[Path, ...] = Field((), description="Directories whose models every project may name by "
                                                         "path (besides DATA_DIR/models and its own jobs).")
    grader_dirs: tuple[Path, ...] = Field((), description="Directories every project's graders may read files "
                                                          "from by relative path (SQLite databases, reward models).")
    environment_dirs: tuple[Path, ...] = Field((), description="Directories of multi-turn environments "
                                                               "(rftkit.environment.factory) jobs may name by "
                                                               "relative path; none: jobs with environments are "
                                                               "refused.")
    grader_hosts: tuple[str, ...] = Field((), description="Hosts (HOST, HOST:PORT) and networks (CIDR) that graders "
                                                          "over the API may reach besides public addresses.")
    ray: str | None = Field(None, description="Where reinforcement jobs place rollout and grader actors: a Ray "
                                              "cluster's address, or 'local' (each job starts a local Ray instance "
                                              "unless $RAY_ADDRESS names one); None: in the job's own process.")
    nproc: int = Field(1, ge=1, description="Data-parallel ranks of each reinforcement job's trainer (no more than "
                                            "the prompts of its step); with `ray`, Ray actors on the cluster.")


@dataclass
class Service:
    settings: ServiceSettings
    store: Store
    supervisor: Supervisor
    serving: ServingClient
    adapters: Adapters = field(default_factory=Adapters)
    grader_network: NetworkPolicy = field(default_factory=NetworkPolicy)  # graders/network.py

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir


def build_service(settings: ServiceSettings) -> Service:
    data_dir = settings.data_dir.resolve()
    for folder in ("files", "jobs", "models"):
        (data_dir / folder).mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"data_dir": data_dir})
    network = NetworkPolicy.parse(settings.grader_hosts)
    store = Store(open_engine(database_url(data_dir, settings.db)))
    supervisor = Supervisor(store, data_dir, workers=settings.workers, poll=settings.poll_seconds,
                            grader_network=network, ray=settings.ray, nproc=settings.nproc)
    return Service(settings, store, supervisor, ServingClient(), grader_network=network)


def create_app(settings: ServiceSettings) -> FastAPI:
    from rftkit.api import completions, dashboard, feedback, files, graders, jobs, models

    service = build_service(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        service.supervisor.start()
        yield
        service.supervisor.stop()
        service.serving.close()

    app = FastAPI(title="rftkit", version="0.1.0", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    # no body is read, nor an upload spooled, past the limit (413 while it streams)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
                       shown_limit=settings.max_upload_bytes)
    app.state.service = service
    errors.install(app)
    for module in (files, jobs, graders, models, completions, feedback, dashboard):
        app.include_router(module.router)
    return app
