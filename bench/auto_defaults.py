"""Does a job that sends only OpenAI's standard fields learn? The "auto" learning rate against
the old fixed default (1e-5), in the same run, on tasks written for this check and kept out of
the rule's tuning, and the sweep on addition that the rule was fitted to.

    python bench/auto_defaults.py untuned --out runs/auto-defaults        # reversed strings, counting
    python bench/auto_defaults.py sweep --out runs/auto-sweep             # addition, tiny and small
    python bench/auto_defaults.py sweep --sizes tiny --rates 3e-5 1e-4 --rftkit '{"update": {"mini_batches": 4}}'

`untuned`: for each task, a tiny model is warm-started by `rftkit model init --sft-data` on a
few labelled rows, then reinforced twice from that same start by a job with only OpenAI's
standard fields (model, files, grader, n_epochs, batch_size): once with today's auto rate, once
with `rftkit.learning_rate: 1e-5` (the default before auto fitted the model). It prints held-out
mean reward and pass@1 (k=8) before and after each. `sweep`: addition from a warm start, the
same standard-fields job at several rates, for each preset. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path

from rftkit.config import parse_job
from rftkit.data.builtin import ADDITION_GRADER, write_addition, write_jsonl
from rftkit.train.rl_job import run_reinforcement_job

OLD_DEFAULT_RATE = 1e-5
SWEEP_SFT_STEPS = 300  # the sweep's warm start; another count gets a folder of its own


# ----------------------------------------------------------------------------- tasks kept out of tuning


def _chat(question: str, answer: str | None) -> dict:
    messages = [{"role": "user", "content": question}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return {"messages": messages, "answer": answer or ""}


def reverse_rows(rng: random.Random, n: int, seen: set[str]) -> list[tuple[str, str]]:
    """(question, answer) pairs: reverse a random lowercase word of 3-6 letters; no word twice."""
    rows = []
    while len(rows) < n:
        word = "".join(rng.choice(string.ascii_lowercase[:12]) for _ in range(rng.randint(3, 6)))
        if word not in seen:
            seen.add(word)
            rows.append((f"reverse {word}", word[::-1]))
    return rows


def count_rows(rng: random.Random, n: int, seen: set[str]) -> list[tuple[str, str]]:
    """(question, answer) pairs: how often a letter occurs in a random string of 4-9 letters."""
    rows = []
    while len(rows) < n:
        text = "".join(rng.choice("abcd") for _ in range(rng.randint(4, 9)))
        letter = rng.choice("abcd")
        question = f"count {letter} in {text}"
        if question not in seen:
            seen.add(question)
            rows.append((question, str(text.count(letter))))
    return rows


TASKS = {
    # partial credit: the fuzzy-match ratio to the reversed word; pass at 1.0 (exactly reversed)
    "reverse": (reverse_rows, {"type": "text_similarity", "name": "reversed", "input": "{{ sample.output_text }}",
                               "reference": "{{ item.answer }}", "evaluation_metric": "fuzzy_match",
                               "pass_threshold": 1.0}),
    "count": (count_rows, {"type": "string_check", "name": "count", "input": "{{ sample.output_text }}",
                           "reference": "{{ item.answer }}", "operation": "eq"}),
}


def write_task(name: str, out: Path, *, seed: int, sft: int = 200, train: int = 400, valid: int = 128) -> dict:
    make, _ = TASKS[name]
    rng, seen = random.Random(seed), set()
    held_out = make(rng, valid, seen)
    files = {
        "valid": [_chat(q, None) | {"answer": a} for q, a in held_out],
        "train": [_chat(q, None) | {"answer": a} for q, a in make(rng, train, seen)],
        "sft": [_chat(q, a) for q, a in make(rng, sft, seen)],
    }
    return {key: write_jsonl(out / f"{key}.jsonl", rows) for key, rows in files.items()}


# ----------------------------------------------------------------------------- jobs


def standard_job(model: Path, files: dict, grader: dict, *, seed: int, n_epochs: int, batch_size: int,
                 learning_rate: float | None = None, rftkit: dict | None = None) -> dict:
    """Only OpenAI's fields; `learning_rate` and `rftkit` (rftkit's own) only to pin old defaults."""
    body = {
        "model": str(model), "training_file": str(files["train"]), "validation_file": str(files["valid"]),
        "seed": seed,
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": grader, "hyperparameters": {"n_epochs": n_epochs, "batch_size": batch_size}}},
    }
    extra = dict(rftkit or {}) | ({"learning_rate": learning_rate} if learning_rate is not None else {})
    if extra:
        body["rftkit"] = extra
    return body


def run_job(body: dict, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    lines: list[str] = []
    summary = run_reinforcement_job(parse_job(body, str(out / "job.yaml")), out, log=lines.append)
    plan = next(line for line in lines if line.startswith("plan:"))
    base, final = summary.baseline or {}, summary.final or {}
    return {"steps": summary.steps, "seconds": round(summary.seconds, 1),
            "learning_rate": float(re.search(r"learning rate (\S+),", plan).group(1)),
            "reward_before": base.get("reward_mean"), "reward_after": final.get("reward_mean"),
            "pass1_before": base.get("pass_at_1"), "pass1_after": final.get("pass_at_1")}


def warm_start(files: dict, out: Path, *, seed: int, steps: int, size: str = "tiny") -> Path:
    """`rftkit model init --sft-data`, as a user would warm-start. The start is deterministic, so one
    already in `out` from the same steps and seed is used again."""
    stamp = out / "warm_start.json"
    made = {"steps": steps, "seed": seed, "size": size, "sft": str(files["sft"])}
    if stamp.exists() and json.loads(stamp.read_text()) == made:
        return out
    command = [sys.executable, "-m", "rftkit.cli", "model", "init", "--out", str(out), "--size", size,
               "--sft-data", str(files["sft"]), "--sft-steps", str(steps), "--seed", str(seed), "--overwrite"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    stamp.write_text(json.dumps(made) + "\n")
    return out


def row(label: str, result: dict) -> str:
    return (f"| {label} | {result['learning_rate']:.2g} | {result['steps']} | {result['reward_before']:.3f} -> "
            f"{result['reward_after']:.3f} ({result['reward_after'] - result['reward_before']:+.3f}) | "
            f"{result['pass1_before']:.1%} -> {result['pass1_after']:.1%} | {result['seconds']:.0f} s |")


def untuned(args) -> list[dict]:
    results = []
    for task in args.tasks:
        for seed in args.seeds:
            folder = args.out / f"{task}-{seed}"
            files = write_task(task, folder / "data", seed=seed)
            base = warm_start(files, folder / "base", seed=seed, steps=args.sft_steps)
            _, grader = TASKS[task]
            for label, rate in (("auto", None), ("old default 1e-5", OLD_DEFAULT_RATE)):
                body = standard_job(base, files, grader, seed=seed, n_epochs=2, batch_size=8, learning_rate=rate)
                result = run_job(body, folder / ("rft-auto" if rate is None else "rft-old"))
                results.append({"task": task, "seed": seed, "setting": label, **result})
                print(row(f"{task} seed {seed}, {label}", result), flush=True)
    return results


def sweep(args) -> list[dict]:
    results = []
    extra = json.loads(args.rftkit)
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", args.rftkit).strip("-") or "default"
    for size in args.sizes:
        folder = args.out / (size if args.sft_steps == SWEEP_SFT_STEPS else f"{size}-sft{args.sft_steps}")
        files = write_addition(folder / "data", seed=0)
        base = warm_start(files, folder / "base", seed=0, steps=args.sft_steps, size=size)
        for rate in args.rates:
            for seed in args.seeds:
                body = standard_job(base, files, ADDITION_GRADER, seed=seed, n_epochs=1, batch_size=8,
                                    learning_rate=rate, rftkit=extra)
                body["rftkit"]["max_steps"] = args.steps
                body["rftkit"]["lengths"] = {"max_completion_tokens": 24}
                result = run_job(body, folder / f"rft-{rate:g}-{tag}-s{seed}")
                results.append({"size": size, "seed": seed, "rftkit": extra, **result})
                print(row(f"addition {size} seed {seed} {tag}", result), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    u = sub.add_parser("untuned", help="reversed strings and counting: auto against the old default")
    u.add_argument("--out", type=Path, default=Path("runs/auto-defaults"))
    u.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    u.add_argument("--seeds", nargs="+", type=int, default=[0])
    u.add_argument("--sft-steps", type=int, default=150)
    s = sub.add_parser("sweep", help="addition at several rates, per preset")
    s.add_argument("--out", type=Path, default=Path("runs/auto-sweep"))
    s.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    s.add_argument("--rates", nargs="+", type=float, default=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3])
    s.add_argument("--steps", type=int, default=60)
    s.add_argument("--sft-steps", type=int, default=SWEEP_SFT_STEPS)
    s.add_argument("--seeds", nargs="+", type=int, default=[0], help="job seeds (the warm start's is 0)")
    s.add_argument("--rftkit", default="{}", help='rftkit settings for every job, as JSON: '
                   '\'{"update": {"mini_batches": 4}}\', \'{"dynamic_sampling": {"enabled": true, "max_rounds": 4}}\'')
    args = parser.parse_args()
    started = time.perf_counter()
    print("| job | learning rate | steps | held-out mean reward | held-out pass@1 | time |")
    print("| --- | --- | --- | --- | --- | --- |")
    results = untuned(args) if args.command == "untuned" else sweep(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"({(time.perf_counter() - started) / 60:.1f} min; {args.out / 'results.json'})")


if __name__ == "__main__":
    main()
