"""rftkit's GRPO against TRL's GRPOTrainer, side by side, in one invocation.

    rftkit bench --quick                    # S preset, full fine-tuning, beta 0: a few minutes
    rftkit bench --presets S,M --variants all --repeats 3 --write BENCHMARKS.md
    rftkit bench --nproc 1,2 --async        # also both at 2 data-parallel processes; rftkit asynchronous

(or `python bench/grpo_vs_trl.py ...` with the same options). For each cell (preset x full/LoRA
x beta) both trainers run from the same saved weights, prompts, reward and settings, each in
its own fresh process, alternating which goes first over the repeats. First an equivalence
check: on one fixed batch both must compute the same loss and gradient norm (within 1e-4).
With `--nproc 1,2` each trainer is also timed as 2 data-parallel processes on the same cores
(rftkit's ranks as `rftkit train --nproc 2` starts them; TRL under `accelerate launch
--num_processes 2`), the threads shared out and the global batch unchanged, so that each is
also seen at its best on this machine, not only at its default.

Reported per cell, each with the rftkit/TRL ratio: seconds per step (median, p90; the first
step of each run is warm-up and left out), completions/s, generation tokens/s, training
tokens/s, peak RSS, held-out reward against training wall-clock and the time to reach a fixed
threshold, and training FLOP utilisation against the measured fp32 matmul peak. The last line
is `throughput ratio rftkit/trl: X.XX` (completions/s of the first cell, one process each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from grpo_common import Settings, held_out_curve, learning_rate, matmul_gflops, prepare  # noqa: E402

# Held-out mean reward that counts as "reached", per preset: the S base starts at 0.22-0.27
# and both sides end 40 steps near 0.40-0.42, so 0.40 is reached within a quick run.
THRESHOLDS = {"S": 0.40, "M": 0.45}
VARIANTS = {"full": (False, 0.0), "full-kl": (False, 0.04), "lora": (True, 0.0), "lora-kl": (True, 0.04)}
# side name: (the program grpo_sides.py runs, its data-parallel processes, rftkit's max_staleness)
SIDES = {"rftkit": ("rftkit", 1, 0), "rftkit-nproc2": ("rftkit", 2, 0), "rftkit-async": ("rftkit", 1, 1),
         "trl": ("trl", 1, 0), "trl-nproc2": ("trl", 2, 0)}


def sides_of(nprocs: list[int], asynchronous: bool = False) -> list[str]:
    """The sides of each cell: rftkit at each --nproc asked for (and asynchronous), then TRL at each.

    >>> sides_of([1, 2], asynchronous=True)
    ['rftkit', 'rftkit-nproc2', 'rftkit-async', 'trl', 'trl-nproc2']
    """
    at = lambda program, n: program if n == 1 else f"{program}-nproc{n}"  # noqa: E731
    return ([at("rftkit", n) for n in nprocs] + (["rftkit-async"] if asynchronous else [])
            + [at("trl", n) for n in nprocs])


def accelerate_launch(nproc: int, threads: int) -> list[str]:
    """`accelerate launch` of `nproc` processes on this machine's CPU, `threads` each, without a
    prompt or a warning. Not `--cpu`: without an MPI hostfile that starts one process whatever
    `--num_processes` says (accelerate 1.15). `--multi_gpu` is accelerate's torchrun launcher;
    TRL's `use_cpu` then makes each process a gloo rank on the CPU, whether the machine has a GPU or not."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(nproc),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
            "--num_cpu_threads_per_process", str(threads)]


def side_processes(program: str, settings: Settings, command: list[str], env: dict) -> list[tuple[list[str], dict]]:
    """(command, environment) of each process to start: one; or `settings.nproc` rftkit ranks with
    the environment `rftkit train --nproc` gives them; or one `accelerate launch` of TRL's."""
    from rftkit.scale.launch import free_port, rank_environment

    if settings.nproc == 1:
        return [(command, env)]
    if program == "trl":
        return [(accelerate_launch(settings.nproc, settings.threads_per_process) + command[1:], env)]
    port = free_port()
    return [(command, {**rank_environment(r, settings.nproc, port, settings.threads),
                       **{k: v for k, v in env.items() if k != "OMP_NUM_THREADS"}}) for r in range(settings.nproc)]


def run_side(side: str, settings: Settings, prepared: dict, out: Path) -> dict:
    """One side's run in fresh processes: one, or `settings.nproc` data-parallel processes (the
    threads shared out among them)."""
    threads = str(settings.threads_per_process)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TOKENIZERS_PARALLELISM="false",
               PYTHONWARNINGS="ignore")
    command = [sys.executable, str(HERE / "grpo_sides.py"), side, "--settings", settings.to_json(),
               "--prepared", json.dumps(prepared), "--out", str(out)]
    processes = [subprocess.Popen(c, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for c, e in side_processes(side, settings, command, env)]
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            for other in processes:
                other.kill()
            raise SystemExit(f"{side} side failed ({settings.label}, {settings.nproc} process(es)):\n{stderr[-3000:]}")
    return json.loads((out / "result.json").read_text())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(runs: list[dict], curves: list[list[dict]], threshold: float, params: int, peak: float,
              lora: bool) -> dict:
    steps = [s for run in runs for s in run["steps"][1:]]  # the first step of each run is warm-up
    seconds = sum(s["seconds"] for s in steps)
    train_seconds = sum(s["seconds"] - s["gen"] - s["reward"] for s in steps)
    train_tokens_per_s = sum(s["trained_tokens"] for s in steps) / train_seconds
    flops_per_token = (4 if lora else 6) * params  # LoRA computes no weight gradients of the base
    reached = [next((p["train_seconds"] for p in curve if p["reward"] >= threshold), None) for curve in curves]
    return {
        "s_per_step_median": statistics.median(s["seconds"] for s in steps),
        "s_per_step_p90": percentile([s["seconds"] for s in steps], 0.9),
        "completions_per_s": sum(s["completions"] for s in steps) / seconds,
        "generation_tokens_per_s": sum(s["generated_tokens"] for s in steps) / sum(s["gen"] for s in steps),
        "training_tokens_per_s": train_tokens_per_s,
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "flop_utilisation": flops_per_token * train_tokens_per_s / (peak * 1e9),
        # over the runs that reach it (how many do is reported next to it)
        "time_to_threshold_s": statistics.median(r for r in reached if r is not None) if any(
            r is not None for r in reached) else None,
        "reached": sum(r is not None for r in reached),
        "held_out_curves": curves,
    }


def run_cell(settings: Settings, prepared: dict, repeats: int, work: Path, peak: float, log,
             nprocs: tuple[int, ...] = (1,), asynchronous: bool = False) -> dict:
    from rftkit.models.load import load_policy
    from rftkit.models.tiny import parameter_count

    params = parameter_count(load_policy(prepared["model"], "cpu")[0])
    sides = sides_of(list(nprocs), asynchronous)
    results = {side: [] for side in sides}
    curves = {side: [] for side in sides}
    for repeat in range(repeats):
        order = sides if repeat % 2 == 0 else sides[::-1]
        for side in order:
            out = work / "runs" / settings.label.replace(" ", "_").replace("=", "") / f"{side}-{repeat}"
            begin = time.perf_counter()
            program, nproc, staleness = SIDES[side]
            result = run_side(program, replace(settings, seed=settings.seed + repeat, nproc=nproc,
                                               max_staleness=staleness), prepared, out)
            results[side].append(result)
            curves[side].append(held_out_curve(prepared, result["snapshots"], seed=1000 + repeat))
            log(f"  {settings.label} repeat {repeat + 1}/{repeats} {side}: {time.perf_counter() - begin:.0f} s, "
                f"held-out reward {curves[side][-1][0]['reward']:.3f} -> {curves[side][-1][-1]['reward']:.3f}")
    threshold = THRESHOLDS[settings.preset]
    cell = {side: summarise(results[side], curves[side], threshold, params, peak, settings.lora) for side in results}
    cell.update(label=settings.label, settings=json.loads(settings.to_json()), params=params, threshold=threshold,
                sides=sides)
    if "rftkit-nproc2" in cell:  # what a second process buys on the same cores
        cell["scaling"] = cell["rftkit-nproc2"]["completions_per_s"] / cell["rftkit"]["completions_per_s"]
    if "trl-nproc2" in cell:
        cell["trl_scaling"] = cell["trl-nproc2"]["completions_per_s"] / cell["trl"]["completions_per_s"]
    cell["best"] = best_of(cell)
    return cell


def best_of(cell: dict) -> dict:
    """Each trainer's fastest side (completions/s) and the ratio of the two: each at its best."""
    rate = lambda side: cell[side]["completions_per_s"]  # noqa: E731
    fastest = {program: max((s for s in cell["sides"] if SIDES[s][0] == program), key=rate)
               for program in ("rftkit", "trl")}
    return {**fastest, "ratio": rate(fastest["rftkit"]) / rate(fastest["trl"])}


def equivalence(settings: Settings, prepared: dict, work: Path) -> dict:
    command = [sys.executable, str(HERE / "grpo_equivalence.py"), "--prepared", json.dumps(prepared),
               "--preset", settings.preset, "--beta", str(settings.beta), "--out", str(work / "equivalence")]
    if settings.lora:
        command.append("--lora")
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"equivalence check crashed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def machine() -> dict:
    import torch
    import transformers
    import trl

    import rftkit

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
            "rftkit": rftkit.__version__}


def cells(presets: list[str], variants: list[str], steps: int, threads: int) -> list[Settings]:
    out = []
    for preset in presets:
        for variant in variants:
            lora, beta = VARIANTS[variant]
            out.append(Settings(preset=preset, lora=lora, beta=beta, steps=steps, threads=threads,
                                learning_rate=learning_rate(preset, lora)))
    return out


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rftkit bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="S preset, full fine-tuning, beta 0, 3 repeats")
    parser.add_argument("--presets", default="S", help="comma-separated: S (~1M params), M (~6M)")
    parser.add_argument("--variants", default="full", help=f"comma-separated of {', '.join(VARIANTS)}, or all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads of each side (shared out among its processes)")
    parser.add_argument("--nproc", default="1", help="comma-separated data-parallel processes to time both trainers "
                        "at: 1, or 1,2 (rftkit's ranks; TRL under accelerate launch)")
    parser.add_argument("--async", dest="asynchronous", action="store_true",
                        help="also time rftkit with asynchronous rollouts (max_staleness 1)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench"))
    parser.add_argument("--write", type=Path, help="also write the results table into this markdown file")
    args = parser.parse_args(argv)
    args.nproc = [int(n) for n in args.nproc.split(",")]
    if not set(args.nproc) <= {1, 2} or 1 not in args.nproc:
        parser.error("--nproc: 1 or 1,2 (each trainer at one process, and at two data-parallel processes)")
    if args.quick:
        args.presets, args.variants, args.repeats, args.steps = "S", "full", 3, 40
    if args.variants == "all":
        args.variants = ",".join(VARIANTS)
    return args


def main(argv=None) -> None:
    from grpo_report import markdown, print_cell, write_section

    args = parse_args(argv)
    log = lambda message: print(message, flush=True)  # noqa: E731
    began = time.perf_counter()
    todo = cells(args.presets.split(","), args.variants.split(","), args.steps, args.threads)
    info = machine()
    info["threads"] = args.threads
    info["matmul_gflops"] = peak = matmul_gflops(todo[0].threads)
    log(f"machine: {info['cores']} cores, {args.threads} torch threads per side, fp32 matmul peak {peak:.0f} GFLOP/s "
        f"with as many; torch {info['torch']}, "
        f"transformers {info['transformers']}, trl {info['trl']}")
    prepared = {p: prepare(args.work / "prepared", p, log=log) for p in dict.fromkeys(s.preset for s in todo)}
    checks = []
    for settings in todo:
        checks.append(equivalence(settings, prepared[settings.preset], args.work))
        c = checks[-1]
        log(f"equivalence {c['label']}: loss {c['rftkit_loss']:.6f} vs {c['trl_loss']:.6f}, grad norm "
            f"{c['rftkit_grad_norm']:.6f} vs {c['trl_grad_norm']:.6f}: {'ok' if c['ok'] else 'MISMATCH'}")
        if not c["ok"]:
            raise SystemExit("equivalence check failed: the two sides do not compute the same loss; not timing")
    results = []
    for settings in todo:
        results.append(run_cell(settings, prepared[settings.preset], args.repeats, args.work, peak, log,
                                tuple(args.nproc), args.asynchronous))
        print_cell(results[-1], log)
    report = {"machine": info, "equivalence": checks, "cells": results, "seconds": time.perf_counter() - began,
              "command": "rftkit bench " + " ".join(sys.argv[1:] if argv is None else argv)}
    (args.work / "results.json").write_text(json.dumps(report, indent=1))
    if args.write:
        write_section(args.write, markdown(report))
        log(f"wrote the results into {args.write}")
    first = results[0]
    rate = lambda side: first[side]["completions_per_s"]  # noqa: E731
    for side in first["sides"]:
        if side != "rftkit" and SIDES[side][0] == "rftkit":
            log(f"throughput ratio {side}/trl: {rate(side) / rate('trl'):.2f}")
    if len(first["sides"]) > 2:
        best = first["best"]
        log(f"throughput ratio best rftkit ({best['rftkit']})/best trl ({best['trl']}): {best['ratio']:.2f}")
    log(f"throughput ratio rftkit/trl: {rate('rftkit') / rate('trl'):.2f}")


if __name__ == "__main__":
    main()
