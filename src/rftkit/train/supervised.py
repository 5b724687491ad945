"""A supervised job, end to end: data -> policy -> exact-match before -> SFT -> after -> save.

`rftkit train JOB.yaml --out DIR` runs this for `method.type: supervised`. DIR receives the
model (`model/`, a save_pretrained directory, or an adapter for LoRA), `metrics.jsonl` (one
row per step) and `summary.json` (rows used, exact-match before and after, time).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from rftkit.config import JobSpec
from rftkit.data.validate import load_examples
from rftkit.errors import RftkitError
from rftkit.eval.exact_match import exact_match
from rftkit.resolved import resolve_supervised
from rftkit.rollout.engine import job_engine
from rftkit.models.load import load_policy, parameter_count_of, save_policy
from rftkit.monitor.console import console, progress_bar, step_reporter
from rftkit.train.sft import SFTSettings, run_sft


@dataclass
class SupervisedSummary:
    train_rows: int
    valid_rows: int
    steps: int
    seconds: float
    exact_match_before: float | None = None
    exact_match_after: float | None = None
    valid_loss_after: float | None = None
    model_dir: str = ""
    hyperparameters: dict = field(default_factory=dict)


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse to write over an earlier run unless asked: nothing is lost by accident."""
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RftkitError(f"{out}: already holds files", fix="choose another --out, or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)


def run_supervised_job(
    spec: JobSpec, out: Path, *, overwrite: bool = False, log: Callable[[str], None] = console.print
) -> SupervisedSummary:
    prepare_out_dir(out, overwrite)
    start = time.perf_counter()
    train = load_examples(spec.training_file, "supervised")
    valid = load_examples(spec.validation_file, "supervised") if spec.validation_file else []
    log(f"data: {len(train)} training rows and {len(valid)} validation rows, all used")
    resolved = resolve_supervised(spec, len(train), parameters=parameter_count_of(spec.model))
    log(f"plan: {resolved.total_steps} steps ({resolved.n_epochs} epochs of batch {resolved.batch_size}), "
        f"learning rate {resolved.learning_rate:g}")
    torch.manual_seed(spec.seed)
    model, tokenizer = load_policy(spec.model, spec.rftkit.device, spec.rftkit.lora, spec.rftkit.precision)
    max_new = spec.rftkit.lengths.max_completion_tokens
    summary = SupervisedSummary(len(train), len(valid), resolved.total_steps, 0.0, hyperparameters=asdict(resolved))
    engine = job_engine(spec.rftkit, model, tokenizer, model_path=spec.model, work_dir=out)
    if valid:
        engine.update_weights(model, 0)
        summary.exact_match_before = exact_match(
            engine, tokenizer, valid, max_new_tokens=max_new, batch_size=spec.rftkit.eval_batch_size
        ).accuracy
        log(f"held-out exact-match before: {summary.exact_match_before:.1%}")
    settings = SFTSettings(
        total_steps=resolved.total_steps,
        batch_size=resolved.batch_size,
        learning_rate=resolved.learning_rate,
        optimizer=spec.rftkit.optimizer,
        seed=spec.seed,
        max_completion_tokens=max_new,
        eval_every=max(1, resolved.total_steps // 10),
        master_weights=spec.rftkit.precision != "bf16-pure",
    )
    with (out / "metrics.jsonl").open("w") as metrics, progress_bar() as progress:
        report = step_reporter(progress, "sft", resolved.total_steps, ("train_loss", "valid_loss"))

        def on_step(row: dict) -> None:
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            report(row)

        history = run_sft(model, tokenizer, train, valid, settings, on_step=on_step)
    summary.valid_loss_after = history[-1].get("valid_loss")
    if valid:
        engine.update_weights(model, len(history))
        summary.exact_match_after = exact_match(
            engine, tokenizer, valid, max_new_tokens=max_new, batch_size=spec.rftkit.eval_batch_size
        ).accuracy
        log(f"held-out exact-match after: {summary.exact_match_after:.1%}")
    engine.close()
    summary.model_dir = str(save_policy(model, tokenizer, out / "model"))
    summary.seconds = round(time.perf_counter() - start, 2)
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary
