"""A reinforcement job, end to end.

validate data and grader -> load the policy -> baseline evaluation (pass@1, pass@k) ->
training steps (validation, checkpoints, monitors) -> final evaluation -> model -> report.

`--resume` continues from the newest checkpoint in the run directory and reproduces, on
CPU, the batches and losses an uninterrupted run would have produced. SIGTERM or Ctrl-C
asks the run to pause: it finishes the current step, writes a checkpoint and stops. An
evaluation (baseline, validation, final) checks for the request between batches and stops
there: an interrupted validation is skipped (its step's checkpoint is written), an interrupted
baseline or final evaluation runs again on resume.

Under data-parallel ranks (`rftkit train --nproc N`, torchrun, Ray) every rank runs this same
job; they agree on stopping before each step and between evaluation batches, and only rank 0
writes the run directory (checkpoints, logs, model, report). A resumed job reads rank 0's
checkpoint on every rank.
"""

from __future__ import annotations

import json
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from rftkit.config import JobSpec
from rftkit.data.chat import reasoning_template_vars
from rftkit.errors import RftkitError
from rftkit.eval.passk import EvalResult, EvalStopped, evaluate, reward_spread
from rftkit.graders import GraderContext
from rftkit.graders.network import NetworkPolicy
from rftkit.models.load import load_tokenizer, parameter_count_of, save_policy
from rftkit.monitor.console import console, progress_bar, step_reporter
from rftkit.monitor.hacking import HackingMonitor
from rftkit.resolved import resolve_reinforcement
from rftkit.rollout.engine import EngineUnavailable
from rftkit.train.checkpoint import (
    CheckpointWriteFailed,
    best_checkpoint,
    latest_checkpoint,
    load_checkpoint_weights,
    load_trainer_state,
    prune_checkpoints,
    save_checkpoint,
)
from rftkit.train.job_rollout import job_rollout
from rftkit.train.optim import precision_in_words
from rftkit.train.rl import RLTrainer
from rftkit.scale.parallel import SINGLE, Parallel
from rftkit.scale.roles import LocalRoles, job_roles
from rftkit.train.rl_setup import build_models, load_data, memorising_warning
from rftkit.train.runlog import NullRunLog, RunLog
from rftkit.train.stop import StopRequest
from rftkit.train.supervised import prepare_out_dir
from rftkit.types import Example

NO_SIGNAL_ADVICE = (
    "try an SFT warm start on a few labelled answers (method.type: supervised, then use that model), "
    "easier prompts, or a partial-credit grader (text_similarity, or multi with partial scores); "
    "pass --force to train anyway"
)
BASELINE_TRAIN_PROMPTS = 32  # without a validation file the baseline samples this many training prompts


@dataclass
class RLSummary:
    status: str
    train_rows: int
    valid_rows: int
    steps: int
    total_steps: int
    seconds: float = 0.0
    seconds_per_step: float = 0.0
    samples_per_s: float = 0.0
    baseline: dict | None = None
    final: dict | None = None
    model_dir: str = ""
    report: str = ""
    warnings: list[str] = field(default_factory=list)


class ReinforcementRun:
    """The state of one run: what `run_reinforcement_job` builds and then drives."""

    def __init__(self, spec: JobSpec, out: Path, *, base_dir: Path | None, log: Callable[[str], None],
                 network: NetworkPolicy | None = None, stop: StopRequest | None = None,
                 parallel: Parallel = SINGLE, roles: LocalRoles | None = None):
        """`roles`: where rollout and grading run (this process by default; Ray actors under --ray)."""
        self.spec, self.out, self.log, self.parallel = spec, out, log, parallel
        self.roles = roles or LocalRoles()
        self.stop = stop or StopRequest()
        effort = spec.method.reinforcement.hyperparameters.reasoning_effort
        rollout = job_rollout(spec, base_dir, reasoning_template_vars(effort))
        self.sampler = rollout.sampler
        self.grader = self.roles.grader(rollout, GraderContext(base_dir=base_dir or Path.cwd(), network=network))
        self.train, self.valid = load_data(spec, load_tokenizer(spec.model), rollout.grader_spec, log)
        self.resolved = resolve_reinforcement(spec, len(self.train), parameters=parameter_count_of(spec.model),
                                              valid_rows=len(self.valid))
        if parallel.world_size > self.resolved.batch_size:
            raise RftkitError(f"{parallel.world_size} data-parallel ranks are more than the {self.resolved.batch_size} "
                              "prompts of a step: a rank would have no prompt to sample",
                              fix=f"use {self.resolved.batch_size} ranks or fewer, or raise batch_size")
        self.monitor = HackingMonitor(spec.rftkit.monitor)
        self.warnings: list[str] = []
        self.last_valid: float | None = None
        self.best_valid: float | None = None
        self.train_rewards_since_eval: list[float] = []
        self.eval_warnings: list[str] = []  # the last validation's, until the step's monitors have run

    def start(self, checkpoint: Path | None) -> None:
        policy, tokenizer, reference, critic = build_models(self.spec, self.resolved, checkpoint)
        self.tokenizer = tokenizer
        engine = self.roles.engine(self.spec.rftkit, policy, tokenizer, model_path=self.spec.model, work_dir=self.out)
        self.trainer = RLTrainer(policy, tokenizer, self.grader, self.train, self.resolved, engine=engine,
                                 reference=reference, critic=critic, sampler=self.sampler, parallel=self.parallel)
        if checkpoint is not None:
            trainer_state, state = load_trainer_state(checkpoint)
            self.trainer.load_state_dict(trainer_state)
            self.restore_monitors(state)
        r = self.resolved
        ranks = f" on {self.parallel.world_size} ranks" if self.parallel.active else ""
        if self.trainer.sharded is not None:
            ranks += " (FSDP: training state sharded" + (", bf16 compute over fp32 master weights)"
                                                         if self.trainer.sharded.mixed_precision == "bf16" else ")")
        elif self.spec.rftkit.fsdp.enabled:
            self.log("note: rftkit.fsdp is on, but the job runs in one process: nothing to shard it over")
        elif r.fsdp_mixed_precision not in ("auto", "no"):
            self.log("note: rftkit.fsdp.mixed_precision applies to the sharded replica, and rftkit.fsdp.enabled is "
                     "off: the job trains in the model's own dtype")
        on_cpu = next(policy.parameters()).device.type == "cpu"
        if self.trainer.sharded is None and (r.precision != "auto" or not on_cpu):
            self.log(f"precision: {precision_in_words(policy, self.trainer.optimizer)}")
        if r.precision in ("bf16", "bf16-pure") and on_cpu:
            self.log("note: bf16 arithmetic is several times slower than fp32 on most CPUs (rftkit.precision)")
        self.log(f"plan: {r.total_steps} steps of {r.batch_size} prompts x {r.group_size} samples "
                 f"({self.spec.rftkit.algorithm}), learning rate {r.learning_rate:g}, engine {engine.name}{ranks}"
                 f"{self.roles.describe()}")

    def stopping(self) -> bool:
        """Whether a stop was requested on any rank (then it is on every rank): ranks agree
        before each step, so none waits in a step the others left."""
        if self.parallel.any(self.stop.reason is not None):
            self.stop.request("stop requested on another rank")
        return self.stop.reason is not None

    def write(self, name: str, text: str) -> None:
        """A file of the run directory, written by rank 0 alone."""
        if self.parallel.is_main:
            (self.out / name).write_text(text)

    def evaluate(self, k: int, *, greedy: bool, seed: int, label: str,
                 examples: list[Example] | None = None) -> EvalResult:
        """pass@k on the validation set (or `examples`), sampled by the training engine with the
        current weights. Raises EvalStopped between batches once a stop is requested."""
        examples = self.valid if examples is None else examples
        self.trainer.sync_engine()
        with progress_bar(transient=True) as progress, self.stop_everywhere():
            task = progress.add_task(label, total=len(examples), info="")
            return evaluate(self.trainer.engine, self.tokenizer, self.grader, examples, k=k,
                            params=self.resolved.sampling, threshold=self.resolved.pass_threshold,
                            batch_prompts=self.spec.rftkit.eval_batch_size, seed=seed, greedy=greedy,
                            on_batch=lambda n: progress.advance(task, n),
                            template_vars=self.resolved.chat_template_vars,
                            should_stop=lambda: self.stop.reason is not None, sampler=self.sampler,
                            parallel=self.parallel)

    @contextmanager
    def stop_everywhere(self):
        """An evaluation stopped on another rank's request stops this rank's job too."""
        try:
            yield
        except EvalStopped:
            self.stop.request("stop requested on another rank")
            raise

    def describe(self, result: EvalResult) -> str:
        greedy = f", greedy {result.greedy_pass:.1%}" if result.greedy_pass is not None else ""
        return (f"pass@1 {result.pass_at_1:.1%}, pass@{result.k} {result.pass_at_k:.1%}, "
                f"mean reward {result.reward_mean:.3f}{greedy} on {result.prompts} prompts")

    def baseline_prompts(self, run_log: RunLog) -> tuple[list[Example], str]:
        """(prompts, what they are): the validation set, else a seeded slice of the training prompts."""
        if self.valid:
            return self.valid, "validation prompts"
        count = min(len(self.train), self.spec.rftkit.eval.max_prompts or BASELINE_TRAIN_PROMPTS)
        chosen = sorted(random.Random(self.spec.seed).sample(range(len(self.train)), count))
        message = (f"baseline: no validation file, so the check runs on {count} of {len(self.train)} "
                   "training prompts (chosen with the job's seed)")
        run_log.event(message, step=0)
        self.log(message)
        return [self.train[i] for i in chosen], "training prompts"

    def baseline(self, force: bool, run_log: RunLog) -> dict | None:
        """pass@k before training; stops the job when no sample earns any reward (see `baseline_verdict`).
        None when it is switched off or a stop request interrupted it (it runs again on resume)."""
        if not self.spec.rftkit.eval.baseline:
            return None
        prompts, what = self.baseline_prompts(run_log)
        try:
            result = self.evaluate(self.spec.rftkit.eval.k, greedy=True, seed=self.spec.seed, label="baseline",
                                   examples=prompts)
        except EvalStopped as stopped:
            run_log.event(f"baseline interrupted ({self.stop.reason}): {stopped}; it runs again on resume", step=0)
            return None
        summary = {**result.summary(), "prompts_from": what, "pass_threshold": self.resolved.pass_threshold,
                   "rewards": reward_spread(result.groups)}
        self.write("baseline.json", json.dumps(summary, indent=1))
        run_log.samples(0, "baseline", result.groups)
        self.log(f"baseline: {self.describe(result)}")
        warning = baseline_verdict(result, summary["rewards"], self.resolved.pass_threshold, what, force)
        if warning:
            self.note([warning], 0, run_log)
        return summary

    def validate(self, step: int, metrics: dict, run_log: RunLog) -> None:
        """A validation pass: valid reward into the metrics row, samples into samples.jsonl.
        A stop request skips the rest of the pass (the step's checkpoint follows)."""
        started = time.perf_counter()
        run_log.event(f"validation at step {step} started on {len(self.valid)} prompts", step=step)
        try:
            result = self.evaluate(self.resolved.eval_samples, greedy=False, seed=self.spec.seed + step,
                                   label="validation")
        except EvalStopped as stopped:
            run_log.event(f"validation at step {step} skipped ({self.stop.reason}): {stopped}", step=step)
            return
        metrics.update({"valid_reward_mean": result.reward_mean, "valid_pass_at_1": result.pass_at_1,
                        "time_eval": round(time.perf_counter() - started, 4)})
        run_log.samples(step, "valid", result.groups)
        self.on_validation(step, result.reward_mean, run_log)

    # ------------------------------------------------------------------ monitors

    def on_validation(self, step: int, valid_reward: float, run_log: RunLog) -> None:
        """Feed a validation result to the monitors; its warnings count for this step's pause."""
        self.last_valid = valid_reward
        train = sum(self.train_rewards_since_eval) / max(len(self.train_rewards_since_eval), 1)
        self.train_rewards_since_eval = []
        self.eval_warnings = self.monitor.on_eval(step, train, valid_reward)
        self.note(self.eval_warnings, step, run_log)

    def watch(self, metrics: dict, groups: list, run_log: RunLog) -> str | None:
        """The step's monitors; returns why to pause (auto-pause), or None. Validation warnings
        of the same step count too, so that `auto_pause_on_warning` applies to every monitor."""
        rewards = [r for g in groups for r in g.rewards]
        lengths = [len(s.completion_ids) for g in groups for s in g.samples]
        warnings = self.eval_warnings + self.monitor.on_step(metrics, rewards, lengths)
        self.note(warnings[len(self.eval_warnings):], metrics["step"], run_log)
        self.eval_warnings = []
        return self.monitor.should_pause(metrics, warnings)

    def monitor_state(self) -> dict:
        """What a checkpoint keeps of the monitors, so that a resumed run remembers their history."""
        return {"last_valid_reward": self.last_valid, "best_valid_reward": self.best_valid,
                "train_rewards_since_eval": self.train_rewards_since_eval, "warnings": self.warnings,
                "monitor": self.monitor.state_dict()}

    def restore_monitors(self, state: dict) -> None:
        self.last_valid = state.get("last_valid_reward", state.get("valid_reward"))
        self.best_valid = state.get("best_valid_reward")
        self.train_rewards_since_eval = list(state.get("train_rewards_since_eval", []))
        self.warnings = list(state.get("warnings", []))
        self.monitor.load_state_dict(state.get("monitor", {}))

    def note(self, warnings: list[str], step: int, run_log: RunLog) -> None:
        for warning in warnings:
            self.warnings.append(warning)
            run_log.event(warning, level="warn", step=step)
            console.print(f"[yellow]warning[/]: {warning}", highlight=False, markup=True)

    # ------------------------------------------------------------------ checkpoints

    def agree(self, wanted: bool) -> bool:
        """Whether any rank wants a checkpoint now. Under FSDP writing one gathers the optimizer's
        state from every rank, so all must take part; otherwise rank 0 alone writes, and decides."""
        return self.parallel.any(wanted) if self.trainer.sharded is not None else wanted

    def checkpoint(self, step: int, metrics: dict) -> None:
        """`valid_reward` is the score this checkpoint's own weights earned: set only when the
        step ran a validation, so that `keep_best` keeps the checkpoint that earned it. Under
        FSDP every rank calls it (see `agree`)."""
        if not self.parallel.is_main and self.trainer.sharded is None:
            return
        trainer_state = self.trainer.state_dict()  # under FSDP, gathered: rank 0 has all of it
        if not self.parallel.is_main:
            return
        state = {"valid_reward": metrics.get("valid_reward_mean"), "metrics": metrics, **self.monitor_state()}
        save_checkpoint(self.out, step, self.trainer.model, trainer_state, state, self.tokenizer)
        opts = self.spec.rftkit.checkpoints
        prune_checkpoints(self.out, opts.keep_last, opts.keep_best)

    def is_new_best(self, metrics: dict) -> bool:
        """Whether this step's validation beat every earlier one (then it is checkpointed for keep_best)."""
        valid = metrics.get("valid_reward_mean")
        if valid is None or (self.best_valid is not None and valid <= self.best_valid):
            return False
        self.best_valid = valid
        return self.spec.rftkit.checkpoints.keep_best > 0

    def use_best_checkpoint(self) -> None:
        """`checkpoints.export: best`: load the best-scored checkpoint's weights into the policy,
        so that the final evaluation and model/ are that checkpoint's."""
        best = best_checkpoint(self.out)
        if best is None:
            self.log("export best: no checkpoint has a validation score; the last policy is exported")
            return
        load_checkpoint_weights(self.trainer.model, best.path / "model")
        # an engine holding its own copy (a server, Ray actors) gets the best weights too: the
        # version changes, so it does not skip them as already current
        self.trainer.sync_engine(best.step)
        self.log(f"export best: {best.path.name} (validation reward {best.valid_reward:.3f})")

    def ensure_checkpoint(self, step: int) -> None:
        """A checkpoint of `step` (the trainer's state now), unless one was written already."""
        if self.agree(self.parallel.is_main and not (self.out / f"checkpoint-{step}").exists()):
            self.checkpoint(step, {})


def baseline_verdict(result: EvalResult, rewards: dict, threshold: float, what: str, force: bool) -> str | None:
    """The baseline's rule. No sample earning any reward (every reward <= 0) stops the job, unless
    `force`: no group can have an advantage. pass@k = 0 with some partial reward (a
    text_similarity or partial-credit grader under its pass threshold) is a warning: the
    differences between samples are still a signal to learn from."""
    where = f"on {result.prompts} {what}"
    if result.pass_at_k == 0 and rewards["max"] <= 0 and not force:
        raise RftkitError(f"baseline: pass@{result.k} is 0 and no sample earns any reward {where} — "
                          "reinforcement has nothing to learn from", fix=NO_SIGNAL_ADVICE)
    if result.pass_at_k == 0 and rewards["max"] > 0:
        return (f"baseline: no sample reaches the pass threshold {threshold:g} {where}, but "
                f"{rewards['positive_share']:.0%} earn partial reward (mean {rewards['mean']:.3f}, max "
                f"{rewards['max']:.3f}); training goes on. Set rftkit.eval.pass_threshold to what counts as a pass")
    return None


def _train_loop(run: ReinforcementRun, run_log: RunLog, stop: StopRequest) -> int:
    """Steps until the plan is done or a stop is requested; returns how many ran."""
    trainer, resolved, opts = run.trainer, run.resolved, run.spec.rftkit
    interval = opts.checkpoints.interval or resolved.eval_interval
    keys = ("train_reward_mean", "valid_reward_mean", "kl", "samples_per_s")
    ran = 0
    with progress_bar() as progress:
        report = step_reporter(progress, "rft", resolved.total_steps, keys, completed=trainer.step_count)
        while trainer.step_count < resolved.total_steps and not run.stopping():
            outcome = trainer.step()
            ran += 1
            step, metrics = trainer.step_count, outcome.metrics
            run.train_rewards_since_eval.append(metrics.get("train_reward_mean", 0.0))
            last = step == resolved.total_steps
            if run.valid and (step % resolved.eval_interval == 0 or last):
                try:
                    run.validate(step, metrics, run_log)
                except EngineUnavailable:
                    run_log.metrics(metrics)  # the step happened, its validation did not
                    raise
            run_log.metrics(metrics)
            run_log.samples(step, "train", outcome.groups[: opts.monitor.samples_per_step])
            pause = run.watch(metrics, outcome.groups, run_log)
            if pause:
                stop.request(f"auto-pause: {pause}")
            if run.agree(run.is_new_best(metrics) or step % interval == 0 or last or stop.reason is not None):
                run.checkpoint(step, metrics)
            report(metrics)
    return ran


def _finish(run: ReinforcementRun, summary: RLSummary, run_log: RunLog) -> None:
    run.parallel.barrier()  # rank 0's checkpoints are written before any rank reads them
    if run.spec.rftkit.checkpoints.export == "best":
        run.use_best_checkpoint()
    if run.valid:
        after = run.evaluate(run.spec.rftkit.eval.k, greedy=True, seed=run.spec.seed, label="final evaluation")
        summary.final = after.summary()
        run.write("final.json", json.dumps(summary.final, indent=1))
        run_log.samples(summary.steps, "final", after.groups)
        run.log(f"final: {run.describe(after)}")
    model_dir = run.out / "model"
    if run.parallel.is_main:
        save_policy(run.trainer.model, run.tokenizer, model_dir)
    summary.model_dir = str(model_dir)


def _finish_unless_stopped(run: ReinforcementRun, summary: RLSummary, run_log: RunLog) -> None:
    """The final evaluation and model; a stop request during the evaluation leaves the job paused
    (resume runs the evaluation again, with no step left to train)."""
    try:
        _finish(run, summary, run_log)
    except EvalStopped as stopped:
        run_log.event(f"final evaluation interrupted ({run.stop.reason}): {stopped}", step=summary.steps)
        return
    summary.status = "succeeded"
    run_log.event("training finished", step=summary.steps)


def _engine_failed(run: ReinforcementRun, summary: RLSummary, run_log: RunLog, err: EngineUnavailable):
    """The engine stopped answering: keep a checkpoint of the last whole step, say how to go on, fail."""
    step = run.trainer.step_count
    run.ensure_checkpoint(step)
    summary.status, summary.steps = "failed", step
    run.write("summary.json", json.dumps(asdict(summary), indent=1) + "\n")
    message = f"rollout engine failed at step {step}: {err.reason}; checkpoint-{step} written"
    run_log.event(message, level="error", step=step)
    raise RftkitError(message, fix=f"{err.fix + '; then ' if err.fix else ''}continue with --resume") from None


def _checkpoint_failed(run: ReinforcementRun, summary: RLSummary, run_log: RunLog, err: CheckpointWriteFailed):
    """A checkpoint could not be written (a full disk): nothing partial was left; fail with an
    event that says so, so that --resume, once there is space, continues from the last good one."""
    summary.status, summary.steps = "failed", err.step
    run_log.event(str(err), level="error", step=err.step)
    try:
        run.write("summary.json", json.dumps(asdict(summary), indent=1) + "\n")
    except OSError:
        pass  # the disk is still full; the event and the error say what happened
    raise err


def run_reinforcement_job(
    spec: JobSpec, out: Path, *, resume: bool = False, force: bool = False, overwrite: bool = False,
    base_dir: Path | None = None, log: Callable[[str], None] = console.print, stop: StopRequest | None = None,
    network: NetworkPolicy | None = None, ray: str | None = None,
) -> RLSummary:
    """`network`: the hosts graders may reach (graders/network.py); None, any (the user's own run).
    `ray`: run rollouts and grading on Ray actors at that address ("": $RAY_ADDRESS, else a local
    Ray instance; `scale/roles.py`); None: in this process.
    Started as one of several data-parallel ranks (RANK and WORLD_SIZE in the environment, as
    `--nproc`, torchrun or Ray set them), it joins their process group (`scale/parallel.py`)."""
    stop = stop or StopRequest()
    with stop:  # from here on SIGTERM / Ctrl-C mean "pause after this step", even during set-up
        parallel = Parallel.from_environment(spec.rftkit.device)
        try:
            roles = job_roles(ray, spec.rftkit)
            try:
                return _run(spec, out, resume=resume, force=force, overwrite=overwrite, base_dir=base_dir, log=log,
                            stop=stop, network=network, parallel=parallel, roles=roles)
            finally:
                roles.close()
        finally:
            parallel.close()


def _run(spec, out, *, resume, force, overwrite, base_dir, log, stop: StopRequest, network,
         parallel: Parallel = SINGLE, roles: LocalRoles | None = None) -> RLSummary:
    if resume:
        checkpoint = latest_checkpoint(out)
    else:
        if parallel.is_main:
            prepare_out_dir(out, overwrite)
        checkpoint = None
    run = ReinforcementRun(spec, out, base_dir=base_dir, log=log, network=network, stop=stop, parallel=parallel,
                           roles=roles)
    run.start(checkpoint.path if checkpoint else None)
    summary = RLSummary("running", len(run.train), len(run.valid), run.trainer.step_count, run.resolved.total_steps)
    resume_step = checkpoint.step if checkpoint else None
    run_log = RunLog(out, spec.rftkit.monitor.sinks, resume_step) if parallel.is_main else NullRunLog()
    started = time.perf_counter()
    try:
        if checkpoint is not None:
            log(f"resumed from {checkpoint.path} (step {checkpoint.step})")
            run_log.event(f"resumed from checkpoint-{checkpoint.step}", step=checkpoint.step)
            if (out / "baseline.json").exists():
                summary.baseline = json.loads((out / "baseline.json").read_text())
            elif checkpoint.step == 0:  # stopped before its baseline finished
                summary.baseline = run.baseline(force, run_log)
        else:
            run.write("job.json", spec.model_dump_json(indent=1))
            run.note(memorising_warning(spec, run.resolved, len(run.train)), 0, run_log)
            summary.baseline = run.baseline(force, run_log)
        ran = _train_loop(run, run_log, stop)
        summary.steps = run.trainer.step_count
        summary.seconds = round(time.perf_counter() - started, 2)
        summary.seconds_per_step = round(summary.seconds / max(ran, 1), 4)
        samples = ran * run.resolved.batch_size * run.resolved.group_size
        summary.samples_per_s = round(samples / max(summary.seconds, 1e-9), 2)
        summary.warnings = run.warnings
        if stop.reason is None:
            _finish_unless_stopped(run, summary, run_log)
        if stop.reason is not None:
            run.ensure_checkpoint(summary.steps)  # stopped before the first step
            summary.status = "paused"
            run_log.event(f"paused at step {summary.steps} ({stop.reason}); continue with --resume", step=summary.steps)
            log(f"paused at step {summary.steps} ({stop.reason}): checkpoint written; continue with --resume")
    except EngineUnavailable as err:
        _engine_failed(run, summary, run_log, err)
    except CheckpointWriteFailed as err:
        _checkpoint_failed(run, summary, run_log, err)
    finally:
        run_log.close()
        run.grader.close()
        run.trainer.close()
    run.write("summary.json", json.dumps(asdict(summary), indent=1) + "\n")
    if summary.status == "succeeded" and parallel.is_main:
        from rftkit.eval.report import write_report

        summary.report = str(write_report(out, asdict(summary)))
        run.write("summary.json", json.dumps(asdict(summary), indent=1) + "\n")
    return summary
