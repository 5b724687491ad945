"""A reinforcement job's monitors and checkpoints, on real tiny runs in this process.

The `test_scripted` grader scores validation prompts from a script (one reward per training
step done so far), so that a test can give a run the validation history it needs, while its
training rewards stay real (the share of 'a' in the answer), so the weights really move.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from safetensors.torch import load_file

from helpers import write_jsonl
from rftkit.config import parse_job
from rftkit.graders.base import REGISTRY, Grader, GraderSpec, register
from rftkit.train.checkpoint import list_checkpoints
from rftkit.train.rl_job import ReinforcementRun, run_reinforcement_job
from rftkit.train.stop import StopRequest

STEP_SAMPLES = 4 * 4  # batch_size x group_size: the training grades of one step


class ScriptedSpec(GraderSpec):
    type: Literal["test_scripted"]
    valid: list[float] = []  # validation reward after training step 1, 2, ...
    train: list[float] = []  # training reward of step 1, 2, ... (empty: the share of 'a' in the answer)
    stop_after_steps: int = 0  # ask STOP to pause once this many steps were graded (0: never)
    down: bool = False  # every grade fails, as with a judge whose server is down
    resumed_at: int = 0  # the step a resumed run starts from (a new grader counts from there)


STOP: list[StopRequest] = []  # the run's stop request, for `stop_after_steps`

if "test_scripted" not in REGISTRY:

    @register("test_scripted")
    class Scripted(Grader):
        spec_model = ScriptedSpec

        def __init__(self, spec, context=None):
            super().__init__(spec, context)
            self.train_grades = spec.resumed_at * STEP_SAMPLES

        def score(self, sample, item):
            if self.spec.down:
                raise ConnectionRefusedError("judge at 127.0.0.1:9 refused the connection")
            if item["split"] == "valid":
                return self.spec.valid[self.train_grades // STEP_SAMPLES - 1]
            self.train_grades += 1
            steps = -(-self.train_grades // STEP_SAMPLES)
            if self.spec.stop_after_steps and steps >= self.spec.stop_after_steps:
                STOP[0].request("test: stop")
            if self.spec.train:
                return self.spec.train[steps - 1]
            return sample.output_text.count("a") / max(len(sample.output_text), 1)


def job(tmp_path: Path, model: Path, steps: int, grader: dict, eval_interval: int = 1, **rftkit):
    rows = [{"messages": [{"role": "user", "content": f"say something with an a, take {i}"}]} for i in range(6)]
    write_jsonl(tmp_path / "train.jsonl", [{**r, "split": "train"} for r in rows[:4]])
    write_jsonl(tmp_path / "valid.jsonl", [{**r, "split": "valid"} for r in rows[4:]])
    return parse_job({
        "model": str(model), "training_file": str(tmp_path / "train.jsonl"),
        "validation_file": str(tmp_path / "valid.jsonl"), "seed": 3,
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": {"type": "test_scripted", "name": "scripted", **grader},
            "hyperparameters": {"batch_size": 4, "eval_interval": eval_interval}}},
        "rftkit": {"group_size": 4, "learning_rate": 1e-2, "max_steps": steps,
                   "lengths": {"max_completion_tokens": 8}, "eval": {"k": 2, "baseline": False},
                   **rftkit},
    })


def run(spec, out: Path, **kwargs):
    STOP[:] = [StopRequest()]
    return run_reinforcement_job(spec, out, base_dir=out.parent, log=lambda _: None, stop=STOP[0], **kwargs)


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def test_validation_drop_auto_pauses(tmp_path, tiny_dir):
    """Issue 17's overfitting: the validation-trend warning at step 4 pauses the run."""
    spec = job(tmp_path, tiny_dir, 5, {"train": [0.40, 0.52, 0.64, 0.76, 0.88],
                                       "valid": [0.24, 0.22, 0.185, 0.19, 0.155]},
               monitor={"auto_pause_on_warning": True})
    summary = run(spec, tmp_path / "run")
    assert summary.status == "paused" and summary.steps == 4
    (warning,) = summary.warnings
    assert "17% below its best 0.240" in warning
    assert any("auto-pause" in e["message"] for e in events(tmp_path / "run"))


def test_a_grader_that_is_down_auto_pauses_at_once(tmp_path, tiny_dir):
    spec = job(tmp_path, tiny_dir, 3, {"down": True}, monitor={"auto_pause_on_warning": True})
    summary = run(spec, tmp_path / "run")
    assert summary.status == "paused" and summary.steps == 1
    assert "the grader failed on 100% of the samples" in summary.warnings[0]


def test_monitor_state_survives_a_resume(tmp_path, tiny_dir):
    """Train, stop, resume: the resumed run starts from the monitors' state at the stop, and
    keeps adding to it. The stop comes during step 3's training grades, so step 3's validation
    is skipped and its train reward waits in the checkpoint for the next evaluation."""
    out = tmp_path / "run"
    grader = {"valid": [0.5, 0.3, 0.2, 0.1], "train": [0.1, 0.2, 0.3, 0.4]}
    spec = job(tmp_path, tiny_dir, 4, {**grader, "stop_after_steps": 3}, monitor={"valid_drop_evals": 1})
    paused = run(spec, out)
    assert paused.status == "paused" and paused.steps == 3
    saved = json.loads((out / "checkpoint-3" / "state.json").read_text())
    assert saved["monitor"]["evals"] == [[0.1, 0.5], [0.2, 0.3]]
    assert saved["train_rewards_since_eval"] == [0.3]
    assert saved["monitor"]["warning_counts"] == {"validation_drop": 1}  # 0.3 under 0.5
    assert saved["best_valid_reward"] == 0.5 and len(saved["warnings"]) == 1

    again = job(tmp_path, tiny_dir, 4, {**grader, "resumed_at": 3}, monitor={"valid_drop_evals": 1})
    resumed = ReinforcementRun(again, out, base_dir=tmp_path, log=lambda _: None)
    resumed.start(out / "checkpoint-3")
    assert resumed.monitor_state() == {k: saved[k] for k in resumed.monitor_state()}
    resumed.trainer.engine.close()
    resumed.grader.close()

    finished = run(again, out, resume=True)
    assert finished.status == "succeeded"
    assert finished.warnings == paused.warnings  # step 4's 0.1 is still the drop from 0.5, said once
    final = json.loads((out / "checkpoint-4" / "state.json").read_text())
    assert final["monitor"]["evals"] == [[0.1, 0.5], [0.2, 0.3], [0.35, 0.1]]  # steps 3 and 4's train rewards


@pytest.mark.parametrize("lora", [False, True])
def test_keep_best_keeps_the_checkpoint_that_earned_the_score_and_export_best_uses_it(tmp_path, tiny_dir, lora):
    """Validation at steps 2, 4, 5 (eval_interval 2, and the last step); step 2 is best. A
    checkpoint at step 3 earned no score (it was stamped with step 2's before)."""
    out = tmp_path / "run"
    spec = job(tmp_path, tiny_dir, 5, {"valid": [0.0, 0.6, 0.0, 0.3, 0.2]}, eval_interval=2,
               checkpoints={"interval": 1, "keep_last": 1, "keep_best": 1, "export": "best"},
               lora={"enabled": lora, "r": 4})
    summary = run(spec, out)
    assert summary.status == "succeeded"
    kept = {c.step: c.valid_reward for c in list_checkpoints(out)}
    assert kept == {2: 0.6, 5: 0.2}
    weights = "adapter_model.safetensors" if lora else "model.safetensors"
    best, last = (load_file(out / f"checkpoint-{n}" / "model" / weights) for n in (2, 5))
    exported = load_file(out / "model" / weights)
    assert any(not best[k].equal(last[k]) for k in best)  # training moved the weights after step 2
    assert all(exported[k].equal(best[k]) for k in best)


def test_checkpoints_at_steps_without_validation_carry_no_score(tmp_path, tiny_dir):
    """Validation at steps 2 and 4: checkpoint-3 holds weights that were never scored."""
    spec = job(tmp_path, tiny_dir, 4, {"valid": [0.5, 0.4, 0.3, 0.2]},
               eval_interval=2, checkpoints={"interval": 1, "keep_last": 5})
    run(spec, tmp_path / "run")
    assert {c.step: c.valid_reward for c in list_checkpoints(tmp_path / "run")} == {1: None, 2: 0.4, 3: None, 4: 0.2}
