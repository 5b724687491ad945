"""How many training prompts does reinforcement need, and how does it compare with supervised
fine-tuning on the same few labelled examples? Measured on a tiny model, with seeds and spread.

    python examples/sample_efficiency/run.py --task addition --seeds 0 1 2
    python examples/sample_efficiency/run.py --task sql --seeds 0 1 2

For each seed: the task's files are written; a tiny model is warm-started the way `rftkit demo`
does it (SFT until about a quarter of sampled training answers pass); from that one base,
- RL on the first 12, 50, 200 and 1,000 training prompts (the same number of steps each);
- SFT on the same 12 prompts, labelled: with every hyperparameter auto, and gently (0.1x the
  auto rate, 10 passes);
- each SFT on those 12, then RL on them.
Every model is evaluated the same way: pass@1 over k=8 samples on the held-out prompts, which
no condition trains on. Results: OUT/results.json, and OUT/<task>.svg, a plot of held-out
pass@1 against the number of training prompts. examples/sample_efficiency/README.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Callable

from rftkit.cli.model import warm_start
from rftkit.cli.train import DEMO_TASKS, DemoTask, competence_check
from rftkit.config import parse_job
from rftkit.data.builtin import addition_row, write_jsonl
from rftkit.data.validate import load_examples
from rftkit.eval.passk import evaluate
from rftkit.graders import build_grader
from rftkit.models.load import load_policy, save_policy, setup_cpu
from rftkit.models.tiny import build_tiny
from rftkit.rollout.engine import local_engine
from rftkit.train.rl_job import run_reinforcement_job
from rftkit.train.supervised import run_supervised_job
from rftkit.types import SamplingParams

SIZES = (12, 50, 200, 1000)
DOZEN = 12


def _addition_label(row: dict) -> dict:
    a, b = map(int, re.fullmatch(r"(\d+)\+(\d+)=", row["messages"][-1]["content"]).groups())
    return addition_row(a, b, with_answer_turn=True)


def _sql_label(row: dict) -> dict:
    return {**row, "messages": row["messages"] + [{"role": "assistant", "content": row["reference_sql"]}]}


# the demo's tasks (rftkit demo --task), and how each labels a training prompt with its answer
LABELS: dict[str, Callable[[dict], dict]] = {"addition": _addition_label, "sql": _sql_label}


def held_out_pass(model_dir: Path, task: DemoTask, files: dict, seed: int) -> float:
    """pass@1 over k=8 samples on every held-out prompt: the one measure of every condition."""
    model, tokenizer = load_policy(str(model_dir), "cpu")
    examples = load_examples(files["valid"], "reinforcement")
    result = evaluate(local_engine(model, tokenizer), tokenizer, build_grader(task.grader(files)), examples, k=8,
                      params=SamplingParams(task.answer_tokens, 1.0), batch_prompts=256, seed=seed, greedy=False)
    return result.pass_at_1


def reinforce(task: DemoTask, base: Path, files: dict, rows: list[dict], out: Path, *, steps: int, seed: int) -> Path:
    """RL from `base` on `rows` alone (no validation file: nothing held out is seen in training)."""
    data = out / "data"
    write_jsonl(data / "train.jsonl", rows)
    body = task.job(str(base), files["train"].parent, steps=steps, seed=seed)
    body["training_file"] = str(data / "train.jsonl")
    body.pop("validation_file", None)
    body["method"]["reinforcement"]["hyperparameters"].pop("n_epochs", None)
    body["method"]["reinforcement"]["hyperparameters"]["batch_size"] = min(32, len(rows))
    body["rftkit"]["eval"] = {"baseline": False}
    run_reinforcement_job(parse_job(body, str(out / "job.yaml")), out / "run", overwrite=True, log=lambda _: None)
    return out / "run" / "model"


def supervise(base: Path, rows: list[dict], out: Path, *, seed: int, gentle: bool = False) -> Path:
    """SFT from `base` on labelled `rows`: every hyperparameter auto (docs/auto.md), or `gentle`:
    a tenth of the auto rate over 10 passes, for a base that already has the skill."""
    data = write_jsonl(out / "data" / "sft.jsonl", rows)
    body = {"model": str(base), "training_file": str(data), "seed": seed, "method": {"type": "supervised"}}
    if gentle:
        body["method"]["supervised"] = {"hyperparameters": {"learning_rate_multiplier": 0.1, "n_epochs": 10}}
    run_supervised_job(parse_job(body, str(out / "job.yaml")), out / "run", overwrite=True, log=lambda _: None)
    return out / "run" / "model"


def one_seed(name: str, task: DemoTask, out: Path, seed: int, steps: int, sizes: tuple[int, ...] = SIZES) -> dict:
    folder = out / f"{name}-{seed}"
    files = task.write(folder / "data", seed)
    setup_cpu()
    model, tokenizer = build_tiny("tiny", seed)
    check = competence_check(model, tokenizer, files["train"], task.target_pass, grader_spec=task.grader(files),
                             answer_tokens=task.answer_tokens, after=task.check_after)
    warm_start(model, tokenizer, files["sft"], None, steps=task.sft_steps, lr=3e-3, batch_size=32, seed=seed,
               should_stop=check)
    base = save_policy(model, tokenizer, folder / "base")
    train = [json.loads(line) for line in files["train"].read_text().splitlines()]
    result = {"task": name, "seed": seed, "steps": steps, "base": held_out_pass(base, task, files, seed)}
    print(f"{name} seed {seed}: base {result['base']:.1%}", flush=True)
    for size in sizes:
        if size > len(train):
            continue
        model_dir = reinforce(task, base, files, train[:size], folder / f"rl-{size}", steps=steps, seed=seed)
        result[f"rl_{size}"] = held_out_pass(model_dir, task, files, seed)
        print(f"  RL on {size} prompts: {result[f'rl_{size}']:.1%}", flush=True)
    return result | supervised_conditions(name, task, out, seed, steps)


def supervised_conditions(name: str, task: DemoTask, out: Path, seed: int, steps: int) -> dict:
    """SFT on the dozen (auto, and gentle), and each followed by RL on the same dozen prompts,
    from the seed's saved warm start."""
    folder = out / f"{name}-{seed}"
    files = {key: folder / "data" / f"{key}.jsonl" for key in ("train", "valid", "sft")}
    files["database"] = folder / "data" / "shop.sqlite"
    base = folder / "base"
    train = [json.loads(line) for line in files["train"].read_text().splitlines()]
    result = {}
    dozen = [LABELS[name](row) for row in train[:DOZEN]]
    sft_dir = supervise(base, dozen, folder / "sft-12", seed=seed)
    result["sft_12"] = held_out_pass(sft_dir, task, files, seed)
    print(f"  SFT on the 12, labelled: {result['sft_12']:.1%}", flush=True)
    both = reinforce(task, sft_dir, files, train[:DOZEN], folder / "sft-rl-12", steps=steps, seed=seed)
    result["sft_rl_12"] = held_out_pass(both, task, files, seed)
    print(f"  SFT then RL on the 12: {result['sft_rl_12']:.1%}", flush=True)
    gentle = supervise(base, dozen, folder / "sft-gentle-12", seed=seed, gentle=True)
    result["sft_gentle_12"] = held_out_pass(gentle, task, files, seed)
    print(f"  gentle SFT on the 12, labelled: {result['sft_gentle_12']:.1%}", flush=True)
    both = reinforce(task, gentle, files, train[:DOZEN], folder / "sft-gentle-rl-12", steps=steps, seed=seed)
    result["sft_gentle_rl_12"] = held_out_pass(both, task, files, seed)
    print(f"  gentle SFT then RL on the 12: {result['sft_gentle_rl_12']:.1%}", flush=True)
    return result


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1%} (one seed)"
    return f"{statistics.fmean(values):.1%} ± {statistics.stdev(values):.1%}"


def table(results: list[dict]) -> str:
    """Markdown: each condition's held-out pass@1, mean ± sd over seeds, and the per-seed values."""
    sizes = sorted({int(k[3:]) for r in results for k in r if k.startswith("rl_")})
    keys = ["base"] + [f"rl_{n}" for n in sizes] + ["sft_12", "sft_rl_12", "sft_gentle_12", "sft_gentle_rl_12"]
    labels = {"base": "warm start (no RL)", "sft_12": "SFT on the 12 (labelled), auto",
              "sft_rl_12": "SFT (auto) on the 12, then RL on them",
              "sft_gentle_12": "SFT on the 12 (labelled), 0.1x rate, 10 passes",
              "sft_gentle_rl_12": "SFT (0.1x, 10 passes) on the 12, then RL on them", **{f"rl_{n}": f"RL on {n} prompts" for n in sizes}}
    lines = ["| condition | held-out pass@1 (mean ± sd) | gain over the warm start | per seed |", "| --- | --- | --- | --- |"]
    for key in keys:
        rows = [r for r in results if key in r]
        if not rows:
            continue
        values, gains = [r[key] for r in rows], [r[key] - r["base"] for r in rows]
        lines.append(f"| {labels[key]} | {spread(values)} | {statistics.fmean(gains) * 100:+.1f} points | "
                     f"{', '.join(f'{v:.1%}' for v in values)} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path, title: str) -> None:
    """An SVG line chart (no plotting library needed): held-out pass@1 against training prompts,
    one faint line per seed and the mean in bold; SFT and SFT-then-RL on the 12 as dots at 12,
    with their means in the legend."""
    width, height, left, bottom, top, right = 660, 360, 60, 50, 40, 240
    sizes = sorted({int(k[3:]) for r in results for k in r if k.startswith("rl_")})
    values = [r[k] for r in results for k in r if k.startswith(("rl_", "sft_", "base"))]
    high = max(0.1, max(values) * 1.1)

    def x(i: int) -> float:
        return left + i * (width - left - right) / max(1, len(sizes) - 1)

    def y(v: float) -> float:
        return height - bottom - v / high * (height - bottom - top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14">{title}</text>',
             f'<line x1="{left}" y1="{y(0)}" x2="{width - right}" y2="{y(0)}" stroke="black"/>',
             f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{top}" stroke="black"/>',
             f'<text x="{(left + width - right) / 2}" y="{height - 10}" text-anchor="middle">training prompts</text>']
    for i, n in enumerate(sizes):
        parts.append(f'<text x="{x(i)}" y="{y(0) + 16}" text-anchor="middle">{n}</text>')
    for t in range(5):
        v = high * t / 4
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4}" text-anchor="end">{v:.0%}</text>')
    base = statistics.fmean(r["base"] for r in results)
    legend_x = width - right + 14
    parts.append(f'<line x1="{left}" y1="{y(base)}" x2="{width - right}" y2="{y(base)}" stroke="gray" '
                 f'stroke-dasharray="4 3"/>')
    parts.append(f'<line x1="{legend_x - 8}" y1="{top + 10}" x2="{legend_x + 8}" y2="{top + 10}" stroke="#1f77b4" '
                 f'stroke-width="3"/><text x="{legend_x + 14}" y="{top + 14}">RL (mean; faint: seeds)</text>')
    parts.append(f'<line x1="{legend_x - 8}" y1="{top + 28}" x2="{legend_x + 8}" y2="{top + 28}" stroke="gray" '
                 f'stroke-dasharray="4 3"/><text x="{legend_x + 14}" y="{top + 32}">warm start: {base:.1%}</text>')
    for r in results:
        points = " ".join(f"{x(i)},{y(r[f'rl_{n}'])}" for i, n in enumerate(sizes) if f"rl_{n}" in r)
        parts.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-opacity="0.3"/>')
    # a seed whose data has fewer training prompts than a size has no run at it: the mean is of those that do
    mean_points = " ".join(f"{x(i)},{y(statistics.fmean(r[f'rl_{n}'] for r in results if f'rl_{n}' in r))}"
                           for i, n in enumerate(sizes))
    parts.append(f'<polyline points="{mean_points}" fill="none" stroke="#1f77b4" stroke-width="3"/>')
    for key, colour, label in (("sft_12", "#d62728", "SFT auto"), ("sft_rl_12", "#2ca02c", "SFT auto+RL"),
                               ("sft_gentle_12", "#ff7f0e", "SFT 0.1x"), ("sft_gentle_rl_12", "#9467bd", "SFT 0.1x+RL")):
        rows = [r[key] for r in results if key in r]
        if not rows:
            continue
        mean, row = statistics.fmean(rows), len([p for p in parts if p.startswith("<circle")])
        parts.append(f'<circle cx="{x(0)}" cy="{y(mean)}" r="5" fill="{colour}" fill-opacity="0.8"/>')
        parts.append(f'<circle cx="{legend_x}" cy="{top + 46 + 18 * row}" r="5" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="{top + 50 + 18 * row}">{label} (at 12): {mean:.1%}</text>')
    path.write_text("\n".join(parts) + "\n</svg>\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=list(LABELS), default="addition")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60, help="RL steps of every RL condition.")
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), help="Training prompts of the RL runs.")
    parser.add_argument("--out", type=Path, default=Path("runs/sample-efficiency"))
    parser.add_argument("--replot", action="store_true", help="Redraw OUT/<task>.svg and the table from OUT/<task>.json.")
    parser.add_argument("--redo-supervised", action="store_true",
                        help="Rerun only the SFT conditions of OUT/<task>.json's seeds, from their saved warm starts.")
    args = parser.parse_args()
    if args.redo_supervised:
        task = DEMO_TASKS[args.task]()
        saved = json.loads((args.out / f"{args.task}.json").read_text())
        results = [r | supervised_conditions(args.task, task, args.out, r["seed"], r["steps"]) for r in saved]
        (args.out / f"{args.task}.json").write_text(json.dumps(results, indent=1) + "\n")
        args.replot = True
    if args.replot:
        results = json.loads((args.out / f"{args.task}.json").read_text())
        plot(results, args.out / f"{args.task}.svg", f"{args.task}: held-out pass@1, tiny model, {len(results)} seeds")
        print(table(results))
        return
    started = time.perf_counter()
    task = DEMO_TASKS[args.task]()
    results = [one_seed(args.task, task, args.out, seed, args.steps, tuple(args.sizes)) for seed in args.seeds]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.task}.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out / f"{args.task}.svg", f"{args.task}: held-out pass@1, tiny model, {len(results)} seeds")
    print(table(results))
    print(f"({(time.perf_counter() - started) / 60:.1f} min; {args.out / (args.task + '.json')}, "
          f"{args.out / (args.task + '.svg')})")


if __name__ == "__main__":
    main()
