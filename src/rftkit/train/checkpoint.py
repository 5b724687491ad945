"""Checkpoints that resume exactly, written atomically, verified before use.

`DIR/checkpoint-N/` holds the policy (`model/`, a save_pretrained directory or a LoRA
adapter), the trainer's state (`trainer.pt`: optimizer, critic, data-order
cursor, RNG states), `state.json` (step, validation reward, metrics so far) and
`manifest.json` (every file's size and SHA-256). It is written into a temporary directory
and renamed into place, so a run killed at any moment leaves either a whole checkpoint or
none. A write that fails (a full disk: ENOSPC) removes its temporary directory and raises
`CheckpointWriteFailed`, so the newest `checkpoint-N` is always the last good one. Loading
re-checks the manifest and refuses a damaged checkpoint instead of silently starting over.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rftkit.errors import RftkitError

NAME = re.compile(r"^checkpoint-(\d+)$")
LOW_SPACE_BYTES = 1 << 20  # less free than this after a failed write: the disk is full


class CheckpointWriteFailed(RftkitError):
    """A checkpoint could not be written (typically: no space left on device); nothing partial remains."""

    def __init__(self, step: int, out: Path, reason: str):
        self.step = step
        previous = list_checkpoints(out)
        last = f"the last good checkpoint is {previous[-1].path.name}" if previous else "there is no earlier checkpoint"
        super().__init__(f"{out}: checkpoint-{step} could not be written ({reason}); nothing partial "
                         f"was left, {last}", fix="free disk space (or choose another --out), then continue with "
                         "--resume")


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    step: int
    valid_reward: float | None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(root: Path) -> dict[str, dict]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    return {str(p.relative_to(root)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}


def save_checkpoint(out: Path, step: int, model: Any, trainer_state: dict, state: dict, tokenizer: Any = None) -> Path:
    """Write DIR/checkpoint-<step> atomically and return its path; on an OSError (a full disk)
    remove what was written and raise CheckpointWriteFailed."""
    final = out / f"checkpoint-{step}"
    temporary = out / f".tmp-checkpoint-{step}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        _write(temporary, step, model, trainer_state, state, tokenizer)
    except Exception as err:  # never leave a partial checkpoint, whatever failed
        full = _disk_full(out, err)
        shutil.rmtree(temporary, ignore_errors=True)
        if full is None:
            raise
        raise CheckpointWriteFailed(step, out, full) from None
    if final.exists():  # a re-run of the same step after resuming: replace it whole
        replaced = out / f".tmp-checkpoint-{step}-replaced-{os.getpid()}"
        os.replace(final, replaced)
        os.replace(temporary, final)
        shutil.rmtree(replaced)
    else:
        os.replace(temporary, final)
    _fsync_dir(out)  # the rename itself is durable
    return final


def _disk_full(out: Path, err: Exception) -> str | None:
    """The reason when `err` is the file system refusing the write, else None (a bug keeps its
    traceback). safetensors and torch.save report a full disk as their own errors (SafetensorError,
    RuntimeError "unexpected pos"), so the free space decides for them."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    if "No space left" in str(err) or shutil.disk_usage(out).free < LOW_SPACE_BYTES:
        return "No space left on device"
    return None


def _write(temporary: Path, step: int, model: Any, trainer_state: dict, state: dict, tokenizer: Any) -> None:
    temporary.mkdir(parents=True)
    model.save_pretrained(temporary / "model")
    if tokenizer is not None:  # so that a checkpoint exports and serves on its own
        tokenizer.save_pretrained(temporary / "model")
    torch.save(trainer_state, temporary / "trainer.pt")
    (temporary / "state.json").write_text(json.dumps({"step": step, **state}, indent=1))
    # the manifest last: a directory without one is never taken for a checkpoint
    (temporary / "manifest.json").write_text(json.dumps(_manifest(temporary), indent=1))
    _fsync_tree(temporary)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(directory)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def list_checkpoints(out: Path) -> list[CheckpointInfo]:
    """Checkpoints in DIR, oldest first (temporary directories are not checkpoints)."""
    found = []
    for path in out.iterdir() if out.exists() else []:
        match = NAME.match(path.name)
        if match and path.is_dir():
            valid = None
            state_file = path / "state.json"
            if state_file.exists():
                try:
                    valid = json.loads(state_file.read_text()).get("valid_reward")
                except ValueError:
                    valid = None
            found.append(CheckpointInfo(path, int(match.group(1)), valid))
    return sorted(found, key=lambda c: c.step)


def verify_checkpoint(path: Path) -> None:
    """Raise RftkitError unless every file the manifest lists is present and intact."""
    manifest_file = path / "manifest.json"
    if not manifest_file.exists():
        raise RftkitError(f"{path}: incomplete checkpoint (no manifest.json)", fix=_fix(path))
    try:
        manifest = json.loads(manifest_file.read_text())
    except ValueError:
        raise RftkitError(f"{path}/manifest.json: corrupt", fix=_fix(path)) from None
    for name, expected in manifest.items():
        file = path / name
        if not file.exists():
            raise RftkitError(f"{path}: incomplete checkpoint, {name} is missing", fix=_fix(path))
        if file.stat().st_size != expected["bytes"] or _sha256(file) != expected["sha256"]:
            raise RftkitError(f"{path}: corrupt checkpoint, {name} does not match its checksum", fix=_fix(path))


def _fix(path: Path) -> str:
    return f"delete {path} to resume from the checkpoint before it, or start a new run with another --out"


def latest_checkpoint(out: Path) -> CheckpointInfo:
    """The newest checkpoint, verified. Never falls back silently: a damaged newest one is refused."""
    for leftover in out.glob(".tmp-checkpoint-*"):
        shutil.rmtree(leftover, ignore_errors=True)  # a write interrupted before its rename
    found = list_checkpoints(out)
    if not found:
        raise RftkitError(f"{out}: no checkpoint to resume from", fix="run without --resume to start training")
    newest = found[-1]
    verify_checkpoint(newest.path)
    return newest


def load_trainer_state(path: Path) -> tuple[dict, dict]:
    """(trainer state for RLTrainer.load_state_dict, state.json)."""
    # onto the CPU: optimizer states and master weights go to their parameters' devices as they load, so a
    # GPU checkpoint resumes anywhere and N ranks do not each put a whole copy on GPU 0
    trainer_state = torch.load(path / "trainer.pt", weights_only=False, map_location="cpu")
    return trainer_state, json.loads((path / "state.json").read_text())


def _by_score(found: list[CheckpointInfo]) -> list[CheckpointInfo]:
    """Scored checkpoints, best validation reward first (the later one first on a tie)."""
    scored = [c for c in found if c.valid_reward is not None]
    return sorted(scored, key=lambda c: (-c.valid_reward, -c.step))


def best_checkpoint(out: Path) -> CheckpointInfo | None:
    """The checkpoint with the best validation reward (verified), or None when none was scored."""
    ranked = _by_score(list_checkpoints(out))
    if not ranked:
        return None
    verify_checkpoint(ranked[0].path)
    return ranked[0]


def load_checkpoint_weights(model: Any, model_dir: Path) -> None:
    """Put a checkpoint's weights (`checkpoint-N/model`: a LoRA adapter or a full model) into
    `model`, the same architecture, in place."""
    from safetensors.torch import load_file

    if (model_dir / "adapter_config.json").exists():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(model_dir / "adapter_model.safetensors"))
        return
    weights = load_file(model_dir / "model.safetensors")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied:
        raise RftkitError(f"{model_dir}: does not hold this model's weights", fix="export with checkpoints.export: last")


def prune_checkpoints(out: Path, keep_last: int, keep_best: int) -> list[Path]:
    """Delete checkpoints that are neither among the last `keep_last` nor the best `keep_best`
    by validation reward; return what was deleted."""
    found = list_checkpoints(out)
    keep = {c.path for c in found[-keep_last:]}
    keep |= {c.path for c in _by_score(found)[:keep_best]}
    removed = [c.path for c in found if c.path not in keep]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed
