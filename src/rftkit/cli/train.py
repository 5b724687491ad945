"""`rftkit train` and `rftkit demo`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import typer

from rftkit.cli.common import out
from rftkit.cli.model import warm_start
from rftkit.data.sql_task import SQL_ANSWER_TOKENS, SQL_CHECK_AFTER, SQL_RL_STEPS, SQL_SFT_STEPS, SQL_TARGET_PASS
from rftkit.errors import RftkitError


def train(
    job: Path = typer.Argument(..., help="A job spec in YAML (see `rftkit config defaults`)."),
    out_dir: Path = typer.Option(..., "--out", help="Run directory: model, metrics, samples, checkpoints, report."),
    resume: bool = typer.Option(False, help="Continue from the newest checkpoint in --out (reinforcement)."),
    force: bool = typer.Option(False, help="Train even when the baseline check finds pass@k = 0."),
    overwrite: bool = typer.Option(False, help="Write into a directory that already holds files."),
    nproc: int = typer.Option(1, min=1, help="Data-parallel ranks (reinforcement; docs/scale.md): processes on this "
                              "machine, or with --ray Ray actors on the cluster."),
    ray: bool = typer.Option(
        False, "--ray", help="Run rollouts and grading on Ray actors, or with --nproc N the N trainer ranks "
        "(reinforcement; docs/scale.md): on the cluster at $RAY_ADDRESS, else on a local Ray instance started for "
        "the job. `--ray ADDRESS` (or --ray=ADDRESS) names the cluster, as --ray-address does. Needs the `ray` "
        "extra of rftkit."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", metavar="ADDRESS",
        help="The Ray cluster for --ray (implies it): HOST:PORT of its head, ray://HOST:PORT, or auto (the cluster "
             "`ray start --head` started on this machine)."),
) -> None:
    """Run a fine-tuning job: supervised, or reinforcement with baseline check, checkpoints and report."""
    from rftkit.config import load_job

    spec = load_job(job)
    ray_at = ray_address if ray_address else ("" if ray else None)  # "": $RAY_ADDRESS, else a local instance
    if ray_at is not None:
        check_ray_alone(spec)
    if nproc > 1 and not os.environ.get("WORLD_SIZE"):
        code = launch_ranks(spec, job, out_dir, nproc, resume=resume, force=force, overwrite=overwrite, ray=ray_at)
        raise typer.Exit(code)
    quiet_unless_rank_zero()
    if spec.method.type == "supervised":
        if resume:
            raise RftkitError("--resume applies to reinforcement jobs", fix="rerun the supervised job with --overwrite")
        from rftkit.train.supervised import run_supervised_job

        summary = run_supervised_job(spec, out_dir, overwrite=overwrite)
        out.print(f"done in {summary.seconds:.0f} s: model in {summary.model_dir}")
        return
    from rftkit.graders.network import NetworkPolicy
    from rftkit.train.rl_job import run_reinforcement_job

    # None on the user's own machine (any host); a job of `rftkit serve` gets the operator's rule
    network = NetworkPolicy.from_env()
    summary = run_reinforcement_job(spec, out_dir, resume=resume, force=force, overwrite=overwrite,
                                    base_dir=job.resolve().parent, network=network, ray=ray_at)
    print_rl_summary(summary)
    if summary.status == "paused":
        raise typer.Exit(3)


def launch_ranks(spec, job: Path, out_dir: Path, nproc: int, *, resume: bool, force: bool, overwrite: bool,
                 ray: str | None = None) -> int:
    """`--nproc N`: check the job can be split N ways, then run N ranks of this command: child
    processes here, or (`ray` not None: `--ray` with its address) Ray actors on the cluster."""

    if spec.method.type != "reinforcement":
        raise RftkitError("--nproc applies to reinforcement jobs", fix="run a supervised job without --nproc")
    batch_size = spec.method.reinforcement.hyperparameters.batch_size
    if isinstance(batch_size, int) and nproc > batch_size:
        raise RftkitError(f"--nproc {nproc} is more ranks than the {batch_size} prompts of a step: a rank would "
                          "have no prompt to sample", fix=f"use --nproc {batch_size} or fewer, or raise batch_size")
    if spec.rftkit.engine == "vllm":
        from rftkit.rollout.vllm_engine import refuse_ranks

        refuse_ranks(nproc)
    args = ["train", str(job.resolve()), "--out", str(out_dir.resolve())]
    args += [flag for flag, on in (("--resume", resume), ("--force", force), ("--overwrite", overwrite)) if on]
    log = lambda line: out.print(line, highlight=False, markup=False)  # noqa: E731
    if ray is not None:
        from rftkit.scale.ray_ranks import launch_on_ray

        out.print(f"rank 0 writes {out_dir}")
        return launch_on_ray(args, nproc, spec.rftkit.ray, ray, device=spec.rftkit.device, log=log)
    from rftkit.scale.launch import launch

    check_gpus(spec.rftkit.device, nproc)
    cores = os.cpu_count() or 1
    if nproc > cores:
        out.print(f"[yellow]warning[/]: --nproc {nproc} is more ranks than this machine's {cores} cores: they will "
                  f"share cores and each step runs slower; --nproc {cores} is the most that pays", highlight=False)
    out.print(f"starting {nproc} data-parallel ranks (rank 0 writes {out_dir})")
    return launch(args, nproc, log=log)


def check_gpus(device: str, nproc: int) -> None:
    """Ranks on GPUs take one GPU each (NCCL does not put two ranks on one): refuse more ranks
    than this machine shows GPUs, before any rank starts."""
    import torch

    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    gpus = torch.cuda.device_count() if on_cuda else 0
    if on_cuda and gpus == 0:
        raise RftkitError("rftkit.device is cuda, and this machine shows no GPU",
                          fix="set rftkit.device: cpu (or auto) to run the ranks on CPU cores")
    if on_cuda and nproc > gpus:
        raise RftkitError(f"--nproc {nproc} needs {nproc} GPUs (one a rank, under NCCL), and this machine shows {gpus}",
                          fix=f"use --nproc {gpus}{' or fewer' if gpus > 1 else ''}, or set rftkit.device: cpu to "
                              "run the ranks on CPU cores")


def ray_address_after_flag(args: list[str]) -> list[str]:
    """`rftkit train`'s arguments with `--ray ADDRESS` and `--ray=ADDRESS` spelled as `--ray
    --ray-address ADDRESS` (the click option is a flag, and the address optional). The word after
    `--ray` is its address unless it is an option, an existing file, or a job file's name.

    >>> ray_address_after_flag(["train", "job.yaml", "--ray", "10.0.0.5:6379", "--out", "r"])
    ['train', 'job.yaml', '--ray', '--ray-address', '10.0.0.5:6379', '--out', 'r']
    >>> ray_address_after_flag(["train", "--ray", "job.yaml", "--ray=auto"])
    ['train', '--ray', 'job.yaml', '--ray', '--ray-address', 'auto']
    >>> ray_address_after_flag(["train", "job.yaml", "--ray", "--out", "r"])
    ['train', 'job.yaml', '--ray', '--out', 'r']
    """
    if not args or args[0] != "train":
        return args
    spelled, rest = [args[0]], args[1:]
    while rest:
        word = rest.pop(0)
        if word == "--":  # the end of the options
            return spelled + [word, *rest]
        if word.startswith("--ray="):
            spelled += ["--ray", "--ray-address", word.removeprefix("--ray=")]
        elif word == "--ray" and rest and _an_address(rest[0]):
            spelled += ["--ray", "--ray-address", rest.pop(0)]
        else:
            spelled.append(word)
    return spelled


def _an_address(word: str) -> bool:
    return not (word.startswith("-") or Path(word).exists() or Path(word).suffix in (".yaml", ".yml", ".json"))


def check_ray_alone(spec) -> None:
    """`--ray` puts a reinforcement job on Ray: one trainer's rollouts and grading on actors, or
    (with `--nproc N`) N trainer ranks as actors. Not a supervised job, and not under torchrun,
    which has placed the ranks already."""
    if spec.method.type != "reinforcement":
        raise RftkitError("--ray applies to reinforcement jobs", fix="run a supervised job without --ray")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RftkitError("--ray does not combine with torchrun: torchrun has placed the ranks already",
                          fix="launch with `rftkit train --ray --nproc N` instead of torchrun, or leave out --ray")


def quiet_unless_rank_zero() -> None:
    """A data-parallel rank other than 0 shows no progress or logs (rank 0 speaks for the job);
    its errors still reach stderr (`rftkit.cli.main`)."""
    if int(os.environ.get("RANK", "0")) > 0 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        out.quiet = True


def print_rl_summary(summary) -> None:
    """Baseline -> final table and throughput, after a reinforcement run."""
    from rich.table import Table

    if summary.baseline or summary.final:
        table = Table("", "pass@1", "pass@k", "greedy", "mean reward", title="held-out evaluation")
        for name, figures in (("baseline", summary.baseline), ("final", summary.final)):
            if figures:
                greedy = figures.get("greedy_pass")
                table.add_row(name, f"{figures['pass_at_1']:.1%}", f"{figures['pass_at_k']:.1%} (k={figures['k']})",
                              "" if greedy is None else f"{greedy:.1%}", f"{figures['reward_mean']:.3f}")
        out.print(table)
    out.print(f"{summary.status}: {summary.steps}/{summary.total_steps} steps in {summary.seconds:.0f} s "
              f"({summary.seconds_per_step:.2f} s/step, {summary.samples_per_s:.0f} samples/s)"
              + (f"; model in {summary.model_dir}" if summary.model_dir else "")
              + (f"; report {summary.report}" if summary.report else ""))


@dataclass(frozen=True)
class DemoTask:
    """What `rftkit demo --task NAME` trains on, and the defaults that fit it."""

    data: str  # what step 1 says the task is
    write: Callable[[Path, int], dict[str, Path]]  # (folder, seed) -> its files: sft, train, valid, ...
    grader: Callable[[dict[str, Path]], dict]  # the files -> the job's grader spec
    job: Callable[..., dict]  # (model, data folder, *, steps, seed) -> the reinforcement job body
    reinforce: str  # what step 4 says the reinforcement is
    answer_tokens: int  # the most tokens an answer takes (the warm start's competence check)
    sft_steps: int
    target_pass: float
    rl_steps: int
    check_after: int = 150  # the first warm-start step at which the competence check runs


def _addition_task() -> DemoTask:
    from rftkit.data.builtin import ADDITION_GRADER, addition_job, write_addition

    return DemoTask("the addition task (show the work, then the sum)", lambda out, seed: write_addition(out, seed=seed),
                    lambda files: ADDITION_GRADER, addition_job, "GRPO against the final-answer grader, no labels",
                    answer_tokens=24, sft_steps=600, target_pass=0.25, rl_steps=300)


def _sql_task() -> DemoTask:
    from rftkit.data.sql_task import sql_grader, sql_job, write_sql_task

    return DemoTask("NL->SQL over a shop database (questions from templates, held-out combinations)",
                    lambda out, seed: write_sql_task(out, seed=seed), lambda files: sql_grader(files["database"]),
                    sql_job, "GRPO against execution accuracy (sql_execution, F1 over rows as partial credit)",
                    answer_tokens=SQL_ANSWER_TOKENS, sft_steps=SQL_SFT_STEPS, target_pass=SQL_TARGET_PASS,
                    rl_steps=SQL_RL_STEPS, check_after=SQL_CHECK_AFTER)


DEMO_TASKS: dict[str, Callable[[], DemoTask]] = {"addition": _addition_task, "sql": _sql_task}


def demo(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="Where the demo writes data, models and the run."),
    task: str = typer.Option(
        "addition", help="The built-in task: addition (multi-digit sums, shown column by column) or sql "
        "(questions about a shop database, graded by running the query)."),
    sft_steps: int | None = typer.Option(
        None, min=1, help="Most supervised warm-start steps (default: addition 600, sql %d)." % SQL_SFT_STEPS),
    target_pass: float | None = typer.Option(
        None, min=0.0, max=1.0,
        help="End the warm start once sampled pass@1 on 64 training prompts reaches this: a base with real but "
             "imperfect skill, where reinforcement has the most to add (default: addition 0.25, sql %g)."
             % SQL_TARGET_PASS),
    rl_steps: int | None = typer.Option(
        None, min=1, help="Reinforcement steps (default: addition 300, sql %d)." % SQL_RL_STEPS),
    seed: int = typer.Option(0, help="Seed for data, model and training."),
) -> None:
    """Build a tiny model, warm-start it on a few labelled answers, then reinforce it on a
    built-in task (addition, or NL->SQL) and show held-out pass@1 before and after."""
    import json
    import shutil

    from rftkit.config import parse_job
    from rftkit.data.validate import check_dataset
    from rftkit.models.load import save_policy, setup_cpu
    from rftkit.models.tiny import build_tiny, parameter_count
    from rftkit.train.rl_job import run_reinforcement_job

    if task not in DEMO_TASKS:
        raise RftkitError(f"--task {task}: no such demo task", fix=f"use one of: {', '.join(DEMO_TASKS)}")
    spec = DEMO_TASKS[task]()
    sft_steps, target_pass = sft_steps or spec.sft_steps, spec.target_pass if target_pass is None else target_pass
    rl_steps = rl_steps or spec.rl_steps
    started = time.perf_counter()
    marker = out_dir / ".rftkit-demo"
    if out_dir.exists() and any(out_dir.iterdir()) and not marker.exists():
        raise RftkitError(f"{out_dir}: holds files that are not an earlier demo", fix="choose another --out")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    marker.touch()
    setup_cpu()
    files = spec.write(out_dir / "data", seed)
    out.print(f"[bold]1. data[/]: {spec.data} in {out_dir / 'data'}")
    for name, purpose in (("sft", "supervised"), ("train", "reinforcement"), ("valid", "reinforcement")):
        checked = check_dataset(files[name], purpose)
        if checked.errors:
            raise RftkitError(str(checked.errors[0]))
        out.print(f"   {files[name].name}: {len(checked.examples)} rows, valid for {purpose}")
    model, tokenizer = build_tiny("tiny", seed)
    out.print(f"[bold]2. model[/]: a tiny Llama, {parameter_count(model):,} parameters, byte-level tokenizer")
    out.print(f"[bold]3. warm start[/]: supervised fine-tuning on {files['sft'].name}, until the model "
              f"solves about {target_pass:.0%} of training prompts when sampling")
    check = competence_check(model, tokenizer, files["train"], target_pass, grader_spec=spec.grader(files),
                             answer_tokens=spec.answer_tokens, after=spec.check_after)
    _, _, sft_seconds, taken = warm_start(model, tokenizer, files["sft"], None, steps=sft_steps, lr=3e-3,
                                          batch_size=32, seed=seed, should_stop=check)
    out.print(f"   stopped after {taken} steps ({sft_seconds:.0f} s)")
    save_policy(model, tokenizer, out_dir / "base")
    out.print(f"[bold]4. reinforcement[/]: {spec.reinforce}; the job is {out_dir / 'job.yaml'}")
    body = spec.job(str((out_dir / "base").resolve()), (out_dir / "data").resolve(), steps=rl_steps, seed=seed)
    (out_dir / "job.yaml").write_text(json.dumps(body, indent=2) + "\n")  # JSON is YAML
    summary = run_reinforcement_job(parse_job(body, str(out_dir / "job.yaml")), out_dir / "rft")
    print_rl_summary(summary)
    _demo_verdict(summary, sft_seconds, time.perf_counter() - started)


def competence_check(model, tokenizer, train_file: Path, target: float, *, prompts: int = 64,
                     every: int = 10, after: int = 150, grader_spec: dict | None = None, answer_tokens: int = 24):
    """`should_stop(step)` for the demo's warm start: every `every` steps past `after`, sample 4
    answers (at most `answer_tokens` long) to the first `prompts` training prompts (never the
    held-out ones), grade them with `grader_spec` (default: the addition task's) and stop once
    pass@1 reaches `target`."""
    from rftkit.data.builtin import ADDITION_GRADER
    from rftkit.data.validate import load_examples
    from rftkit.eval.passk import evaluate
    from rftkit.graders import build_grader
    from rftkit.rollout.engine import local_engine
    from rftkit.types import SamplingParams

    examples = load_examples(train_file, "reinforcement")[:prompts]
    grader = build_grader(grader_spec or ADDITION_GRADER)
    engine = local_engine(model, tokenizer)

    def should_stop(step: int) -> bool:
        if step < after or step % every:
            return False
        result = evaluate(engine, tokenizer, grader, examples, k=4, params=SamplingParams(answer_tokens, 1.0),
                          batch_prompts=256, seed=step, greedy=False)
        model.train()
        return result.pass_at_1 >= target

    return should_stop


def _demo_verdict(summary, sft_seconds: float, total_seconds: float) -> None:
    base, final = summary.baseline or {}, summary.final or {}
    if not base or not final:
        return
    gain = 100 * (final["pass_at_1"] - base["pass_at_1"])
    out.print(
        f"[bold]result[/]: held-out pass@1 {base['pass_at_1']:.1%} -> {final['pass_at_1']:.1%} "
        f"({gain:+.1f} points), pass@{final['k']} {base['pass_at_k']:.1%} -> {final['pass_at_k']:.1%}, "
        f"greedy {base['greedy_pass']:.1%} -> {final['greedy_pass']:.1%}; "
        f"warm start {sft_seconds:.0f} s, reinforcement {summary.seconds:.0f} s "
        f"({summary.seconds_per_step:.2f} s/step), total {total_seconds / 60:.1f} min"
    )
