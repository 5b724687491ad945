"""Where metrics go: metrics.jsonl always; TensorBoard, wandb, mlflow or trackio when asked.

The optional sinks import their package only when chosen, run offline by default, keep what
they write under the run directory, and say which extra to install when the package is missing
(`pip install 'rftkit[tensorboard]'`, `[wandb]`, `[mlflow]`, `[trackio]`, or `[sinks]` for all):

- tensorboard: event files in RUN/tensorboard;
- wandb: offline (unless $WANDB_MODE says otherwise), in RUN/wandb; `wandb sync` uploads it later;
- mlflow: a file store in RUN/mlruns, unless $MLFLOW_TRACKING_URI names a server or database;
- trackio: its local SQLite database in RUN/trackio, unless $TRACKIO_DIR names another folder
  (read at import, so it is set before trackio is imported).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from rftkit.errors import RftkitError


class Sink(Protocol):
    def write(self, row: dict) -> None: ...
    def close(self) -> None: ...


def numeric(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class JsonlSink:
    def __init__(self, path: Path):
        self.handle = path.open("a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.handle.write(json.dumps(row) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RftkitError(f"metrics sink needs {module!r}", fix=f"pip install 'rftkit[{extra}]'") from None


class TensorBoardSink:
    def __init__(self, run_dir: Path):
        _require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, row: dict) -> None:
        for key, value in numeric(row).items():
            if key != "step":
                self.writer.add_scalar(key, value, global_step=int(row["step"]))

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    def __init__(self, run_dir: Path):
        wandb = _require("wandb", "wandb")
        os.environ.setdefault("WANDB_MODE", "offline")
        self.run = wandb.init(dir=str(run_dir), project="rftkit", name=run_dir.name)

    def write(self, row: dict) -> None:
        self.run.log({k: v for k, v in numeric(row).items() if k != "step"}, step=int(row["step"]))

    def close(self) -> None:
        self.run.finish()


class MlflowSink:
    def __init__(self, run_dir: Path):
        self.mlflow = _require("mlflow", "mlflow")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # MLflow 3 refuses a file store unless asked: it is what keeps this sink offline and
            # server-free, so ask (a user's own $MLFLOW_ALLOW_FILE_STORE still wins)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self.mlflow.set_tracking_uri((run_dir / "mlruns").resolve().as_uri())
        self.mlflow.start_run(run_name=run_dir.name)

    def write(self, row: dict) -> None:
        metrics = {k: v for k, v in numeric(row).items() if k != "step"}
        self.mlflow.log_metrics(metrics, step=int(row["step"]))

    def close(self) -> None:
        self.mlflow.end_run()


class TrackioSink:
    def __init__(self, run_dir: Path):
        os.environ.setdefault("TRACKIO_DIR", str((run_dir / "trackio").resolve()))
        self.trackio = _require("trackio", "trackio")
        self.trackio.init(project="rftkit", name=run_dir.name)

    def write(self, row: dict) -> None:
        metrics = {k: v for k, v in numeric(row).items() if k != "step"}  # trackio reserves "step"
        self.trackio.log(metrics, step=int(row["step"]))

    def close(self) -> None:
        self.trackio.finish()


OPTIONAL_SINKS = {"tensorboard": TensorBoardSink, "wandb": WandbSink, "mlflow": MlflowSink, "trackio": TrackioSink}


def open_sinks(run_dir: Path, names: list[str]) -> list[Sink]:
    sinks: list[Sink] = [JsonlSink(run_dir / "metrics.jsonl")]
    sinks.extend(OPTIONAL_SINKS[name](run_dir) for name in names)
    return sinks
