"""Tables for the GRPO benchmark: on the console and as a BENCHMARKS.md section."""

from __future__ import annotations

import re
from pathlib import Path

START, END = "<!-- grpo-bench:start -->", "<!-- grpo-bench:end -->"

# (key, label, format, higher is better)
FIGURES = [
    ("s_per_step_median", "s/step (median)", "{:.3f}", False),
    ("s_per_step_p90", "s/step (p90)", "{:.3f}", False),
    ("completions_per_s", "completions/s", "{:.0f}", True),
    ("generation_tokens_per_s", "generation tokens/s", "{:.0f}", True),
    ("training_tokens_per_s", "training tokens/s", "{:.0f}", True),
    ("peak_rss_mb", "peak RSS (MB)", "{:.0f}", False),
    ("flop_utilisation", "training FLOP utilisation (6·P·tokens/s ÷ peak)", "{:.1%}", True),
    ("time_to_threshold_s", "time to held-out threshold (s; median of the runs that reach it)", "{:.1f}", False),
]


def ratio(cell: dict, key: str, side: str = "rftkit") -> str:
    ours, theirs = cell[side][key], cell["trl"][key]
    if ours is None or theirs is None or not theirs:
        return "n/a"
    return f"{ours / theirs:.2f}"


def fmt(value, pattern: str) -> str:
    return "not reached" if value is None else pattern.format(value)


def sides(cell: dict) -> list[str]:
    return cell.get("sides", ["rftkit", "trl"])  # results.json from before the sides were listed


def ours(cell: dict) -> list[str]:
    """The cell's rftkit sides: one process, and data-parallel ranks where they were timed."""
    return [s for s in sides(cell) if s.startswith("rftkit")]


def peers(cell: dict) -> list[str]:
    """The cell's TRL sides: one process, and under `accelerate launch` where that was timed."""
    return [s for s in sides(cell) if s.startswith("trl")]


def side_name(side: str) -> str:
    """A side's name in the tables.

    >>> [side_name(s) for s in ("rftkit", "rftkit-nproc2", "rftkit-async", "trl", "trl-nproc2")]
    ['rftkit', 'rftkit --nproc 2', 'rftkit async', 'TRL', 'TRL --nproc 2']
    """
    return side.replace("trl", "TRL").replace("-nproc", " --nproc ").replace("-async", " async")


def rows(cell: dict) -> list[tuple[str, ...]]:
    """(figure, each rftkit side's value, each TRL side's, each rftkit side's ratio to TRL at one
    process) per figure."""
    return [(label, *(fmt(cell[s][key], pattern) for s in ours(cell) + peers(cell)),
             *(ratio(cell, key, s) for s in ours(cell))) for key, label, pattern, _ in FIGURES]


def scaling_lines(cell: dict) -> list[str]:
    """What a second process buys each trainer, and each at its best against the other."""
    lines = [f"{name} at 2 processes over 1 on the same cores: {cell[key]:.2f}x completions/s"
             for key, name in (("scaling", "rftkit"), ("trl_scaling", "TRL")) if key in cell]
    if len(sides(cell)) > 2 and "best" in cell:
        best = cell["best"]
        lines.append(f"each at its best, {side_name(best['rftkit'])} over {side_name(best['trl'])}: "
                     f"{best['ratio']:.2f}x completions/s")
    return lines


def curve_text(curve: list[dict]) -> str:
    return " ".join(f"{p['train_seconds']:.0f}s:{p['reward']:.2f}" for p in curve)


def print_cell(cell: dict, log) -> None:
    log(f"{cell['label']} ({cell['params']:,} parameters, threshold {cell['threshold']}):")
    names = [side_name(s) for s in ours(cell)]
    header = [*names, *(side_name(s).lower() for s in peers(cell)),
              *(f"{n}/trl" if len(names) > 1 else "ratio" for n in names)]
    log(f"  {'':48} " + " ".join(f"{h:>16}" for h in header))
    for label, *values in rows(cell):
        log(f"  {label:48} " + " ".join(f"{v:>16}" for v in values))
    for line in scaling_lines(cell):
        log(f"  {line}")
    for side in sides(cell):
        log(f"  held-out reward vs training seconds, {side} (repeat 1): {curve_text(cell[side]['held_out_curves'][0])}")


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Command: `{report['command']}` ({report['seconds'] / 60:.0f} min). Machine: {m['cores']} cores "
        f"({m['cpu']}), {m['threads']} torch thread(s) per side, fp32 matmul peak {m['matmul_gflops']:.0f} GFLOP/s measured; Python {m['python']}, "
        f"torch {m['torch']}, transformers {m['transformers']}, TRL {m['trl']}, rftkit {m['rftkit']}.",
        "",
        "Equivalence (one fixed batch, identical weights): "
        + "; ".join(f"{c['label']}: loss diff {c['loss_diff']:.1e}, grad-norm diff {c['grad_norm_diff']:.1e}"
                    for c in report["equivalence"]) + ".",
        "",
        "Training FLOP utilisation counts 6·P FLOPs (4·P with LoRA) for every token of every row in a "
        "step's batch, prompt included, on both sides. rftkit computes a group's prompt once and skips "
        "rows whose advantages are all zero, so its figure is an effective rate and can pass 100%.",
        "",
        *(["TRL --nproc 2 is TRL's GRPOTrainer in 2 data-parallel CPU processes (gloo) started by "
           "`accelerate launch --multi_gpu --num_processes 2` with `use_cpu` (accelerate's `--cpu` starts "
           "one process without MPI), each with half the threads and half of the same global batch; "
           "the ratio columns are against TRL at one process.", ""]
          if any("trl-nproc2" in sides(c) for c in report["cells"]) else []),
    ]
    for cell in report["cells"]:
        s = cell["settings"]
        lines += [
            f"**{cell['label']}** — {cell['params']:,} parameters; {s['prompts_per_step']} prompts x "
            f"{s['group_size']} completions per step, {s['steps']} steps, lr {s['learning_rate']:g}, "
            f"max {s['max_completion_tokens']} completion tokens; held-out threshold {cell['threshold']} "
            f"(reached in {cell['rftkit']['reached']} of the rftkit runs, {cell['trl']['reached']} of TRL's)",
            "",
            "| | " + " | ".join([*map(side_name, ours(cell) + peers(cell)),
                                 *(f"{side_name(s)}/TRL" for s in ours(cell))]) + " |",
            "|---|" + "---:|" * (2 * len(ours(cell)) + len(peers(cell))),
            *["| " + " | ".join(row) + " |" for row in rows(cell)],
            "",
            *(["; ".join(scaling_lines(cell)) + ".", ""] if scaling_lines(cell) else []),
            "Held-out reward against training seconds (repeat 1): " + "; ".join(
                f"{side_name(s)} {curve_text(cell[s]['held_out_curves'][0])}" for s in sides(cell)) + ".",
            "",
        ]
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Replace the text between the benchmark's markers in `path` (appending them if absent)."""
    text = path.read_text() if path.exists() else ""
    section = f"{START}\n{body}\n{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
