"""Each metrics sink, offline and end to end: `RunLog` writes steps through it in a fresh process
(as `rftkit train` does), and the rows are read back with the tool's own reader.

A sink whose package is not installed is skipped (`make install` installs all four through the
dev extra; `pip install 'rftkit[sinks]'` elsewhere)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WRITE = """
import sys
from pathlib import Path
from rftkit.train.runlog import RunLog
log = RunLog(Path(sys.argv[1]), [sys.argv[2]])
for step in (1, 2, 3):
    log.metrics({"step": step, "train_reward_mean": step / 10, "note": "text is left out", "paused": False})
log.close()
"""

READ = {
    "tensorboard": """
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
events = EventAccumulator(str(run / "tensorboard"))
events.Reload()
rows = [{"step": e.step, "train_reward_mean": e.value} for e in events.Scalars("train_reward_mean")]
tags = events.Tags()["scalars"]
""",
    "mlflow": """
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=(run / "mlruns").as_uri())
[found] = client.search_runs(["0"])
rows = [{"step": m.step, "train_reward_mean": m.value}
        for m in client.get_metric_history(found.info.run_id, "train_reward_mean")]
tags = sorted(found.data.metrics)
""",
    "trackio": """
from trackio.sqlite_storage import SQLiteStorage
[name] = SQLiteStorage.get_runs("rftkit")
logs = SQLiteStorage.get_logs("rftkit", name)
rows = [{"step": r["step"], "train_reward_mean": r["train_reward_mean"]} for r in logs]
tags = sorted(k for k in logs[0] if k not in ("step", "timestamp"))
""",
    "wandb": """
import glob
from wandb.proto import wandb_internal_pb2
from test_sinks import wandb_records
[path] = glob.glob(str(run / "wandb" / "offline-run-*" / "*.wandb"))
history = []
for raw in wandb_records(path):
    record = wandb_internal_pb2.Record()
    record.ParseFromString(raw)
    if record.WhichOneof("record_type") == "history":
        history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
rows = [{"step": h["_step"], "train_reward_mean": h["train_reward_mean"]} for h in history]
tags = sorted(k for k in history[0] if not k.startswith("_"))
""",
}
MODULE = {"tensorboard": "tensorboard", "mlflow": "mlflow", "trackio": "trackio", "wandb": "wandb"}


def wandb_records(path):
    """The protobuf records of an offline .wandb file: W&B's LevelDB-log format, a 7-byte file
    header (":W&B", 0xBEE1, version), then 32 KiB blocks of chunks, each behind a 7-byte header
    (crc32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    import struct

    data = Path(path).read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1)
    at, pending = 7, b""
    while at + 7 <= len(data):
        room = 32768 - at % 32768
        if room < 7:  # a block's tail too short for a header is padding
            at += room
            continue
        _, length, kind = struct.unpack("<IHB", data[at:at + 7])
        chunk, at = data[at + 7:at + 7 + length], at + 7 + length
        if kind == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            yield pending
            pending = b""


def python(code: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env,
                          cwd=Path(__file__).parent)


@pytest.mark.parametrize("sink", sorted(READ))
def test_a_sink_writes_every_step_offline_and_reads_back(tmp_path, sink):
    if importlib.util.find_spec(MODULE[sink]) is None:
        pytest.skip(f"{sink} is not installed (pip install 'rftkit[{sink}]')")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_", "TRACKIO_"))}
    env |= {"PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "NO_PROXY": "*"}
    run = tmp_path / "run"
    run.mkdir()
    written = python(WRITE, str(run), sink, env=env)
    assert written.returncode == 0, written.stderr[-3000:]
    read = python("import json, os, sys\nfrom pathlib import Path\nrun = Path(sys.argv[1])\n"
                  "os.environ.setdefault('MLFLOW_ALLOW_FILE_STORE', 'true')\n"
                  f"os.environ['TRACKIO_DIR'] = str(run / 'trackio')\n{READ[sink]}\n"
                  "print(json.dumps({'rows': rows, 'tags': sorted(tags)}))", str(run), env=env)
    assert read.returncode == 0, read.stderr[-3000:]
    got = json.loads(read.stdout.strip().splitlines()[-1])
    assert got["rows"] == [{"step": s, "train_reward_mean": pytest.approx(s / 10)} for s in (1, 2, 3)]
    assert got["tags"] == ["train_reward_mean"]  # the step is the axis, text and booleans are left out


def test_a_missing_package_names_its_extra(tmp_path, monkeypatch):
    from rftkit.errors import RftkitError
    from rftkit.monitor import sinks

    monkeypatch.setitem(sys.modules, "trackio", None)  # as if it were not installed
    with pytest.raises(RftkitError, match=r"pip install 'rftkit\[trackio\]'"):
        sinks.open_sinks(tmp_path, ["trackio"])


def test_every_sink_has_the_extra_its_install_hint_names():
    import tomllib

    from rftkit.monitor.sinks import OPTIONAL_SINKS

    extras = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name in OPTIONAL_SINKS:
        assert extras[name], name  # `pip install 'rftkit[NAME]'`, as the sink's error says
    assert extras["sinks"] == [f"rftkit[{','.join(OPTIONAL_SINKS)}]"]
    assert "rftkit[sinks]" in extras["dev"]
