"""Where metrics go: metrics.jsonl always; TensorBoard, wandb, mlflow or trackio when asked.

The optional sinks import their package only when chosen, run offline by default (wandb
and trackio in offline/local mode, mlflow to a local ./mlruns under the run directory), and
say which extra to install when the package is missing.
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
        self.run.log(numeric(row), step=int(row["step"]))

    def close(self) -> None:
        self.run.finish()


class MlflowSink:
    def __init__(self, run_dir: Path):
        self.mlflow = _require("mlflow", "mlflow")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            self.mlflow.set_tracking_uri((run_dir / "mlruns").resolve().as_uri())
        self.mlflow.start_run(run_name=run_dir.name)

    def write(self, row: dict) -> None:
        metrics = {k: v for k, v in numeric(row).items() if k != "step"}
        self.mlflow.log_metrics(metrics, step=int(row["step"]))

    def close(self) -> None:
        self.mlflow.end_run()


class TrackioSink:
    def __init__(self, run_dir: Path):
        self.trackio = _require("trackio", "trackio")
        self.trackio.init(project="rftkit", name=run_dir.name)

    def write(self, row: dict) -> None:
        self.trackio.log(numeric(row))

    def close(self) -> None:
        self.trackio.finish()


OPTIONAL_SINKS = {"tensorboard": TensorBoardSink, "wandb": WandbSink, "mlflow": MlflowSink, "trackio": TrackioSink}


def open_sinks(run_dir: Path, names: list[str]) -> list[Sink]:
    sinks: list[Sink] = [JsonlSink(run_dir / "metrics.jsonl")]
    sinks.extend(OPTIONAL_SINKS[name](run_dir) for name in names)
    return sinks
