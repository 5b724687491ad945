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


def ratio(cell: dict, key: str) -> str:
    ours, theirs = cell["rftkit"][key], cell["trl"][key]
    if ours is None or theirs is None or not theirs:
        return "n/a"
    return f"{ours / theirs:.2f}"


def fmt(value, pattern: str) -> str:
    return "not reached" if value is None else pattern.format(value)


def rows(cell: dict) -> list[tuple[str, str, str, str]]:
    return [(label, fmt(cell["rftkit"][key], pattern), fmt(cell["trl"][key], pattern), ratio(cell, key))
            for key, label, pattern, _ in FIGURES]


def curve_text(curve: list[dict]) -> str:
    return " ".join(f"{p['train_seconds']:.0f}s:{p['reward']:.2f}" for p in curve)


def print_cell(cell: dict, log) -> None:
    log(f"{cell['label']} ({cell['params']:,} parameters, threshold {cell['threshold']}):")
    log(f"  {'':48} {'rftkit':>12} {'trl':>12} {'ratio':>7}")
    for label, ours, theirs, r in rows(cell):
        log(f"  {label:48} {ours:>12} {theirs:>12} {r:>7}")
    for side in ("rftkit", "trl"):
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
    ]
    for cell in report["cells"]:
        s = cell["settings"]
        lines += [
            f"**{cell['label']}** — {cell['params']:,} parameters; {s['prompts_per_step']} prompts x "
            f"{s['group_size']} completions per step, {s['steps']} steps, lr {s['learning_rate']:g}, "
            f"max {s['max_completion_tokens']} completion tokens; held-out threshold {cell['threshold']} "
            f"(reached in {cell['rftkit']['reached']} of the rftkit runs, {cell['trl']['reached']} of TRL's)",
            "",
            "| | rftkit | TRL | rftkit/TRL |",
            "|---|---:|---:|---:|",
            *[f"| {label} | {ours} | {theirs} | {r} |" for label, ours, theirs, r in rows(cell)],
            "",
            f"Held-out reward against training seconds (repeat 1): rftkit {curve_text(cell['rftkit']['held_out_curves'][0])}; "
            f"TRL {curve_text(cell['trl']['held_out_curves'][0])}.",
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
