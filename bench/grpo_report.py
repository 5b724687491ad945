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


def ours(cell: dict) -> list[str]:
    """The cell's rftkit sides: one process, and data-parallel ranks where they were timed."""
    return [s for s in cell.get("sides", ["rftkit", "trl"]) if s != "trl"]


def side_name(side: str) -> str:
    """>>> side_name("rftkit-nproc2")
    'rftkit --nproc 2'
    """
    return side.replace("-nproc", " --nproc ").replace("-async", " async") if side != "trl" else "TRL"


def rows(cell: dict) -> list[tuple[str, ...]]:
    """(figure, each rftkit side's value, TRL's, each rftkit side's ratio to TRL) per figure."""
    return [(label, *(fmt(cell[s][key], pattern) for s in ours(cell)), fmt(cell["trl"][key], pattern),
             *(ratio(cell, key, s) for s in ours(cell))) for key, label, pattern, _ in FIGURES]


def curve_text(curve: list[dict]) -> str:
    return " ".join(f"{p['train_seconds']:.0f}s:{p['reward']:.2f}" for p in curve)


def print_cell(cell: dict, log) -> None:
    log(f"{cell['label']} ({cell['params']:,} parameters, threshold {cell['threshold']}):")
    names = [side_name(s) for s in ours(cell)]
    header = [*names, "trl", *(f"{n}/trl" if len(names) > 1 else "ratio" for n in names)]
    log(f"  {'':48} " + " ".join(f"{h:>16}" for h in header))
    for label, *values in rows(cell):
        log(f"  {label:48} " + " ".join(f"{v:>16}" for v in values))
    if "scaling" in cell:
        log(f"  2 ranks over 1 process on the same cores: {cell['scaling']:.2f}x completions/s")
    for side in cell.get("sides", ["rftkit", "trl"]):
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
            "| | " + " | ".join([*map(side_name, ours(cell)), "TRL", *(f"{side_name(s)}/TRL" for s in ours(cell))]) + " |",
            "|---|" + "---:|" * (2 * len(ours(cell)) + 1),
            *["| " + " | ".join(row) + " |" for row in rows(cell)],
            "",
            *([f"Two data-parallel ranks over one process on the same cores: {cell['scaling']:.2f}x completions/s.", ""]
              if "scaling" in cell else []),
            "Held-out reward against training seconds (repeat 1): " + "; ".join(
                f"{side_name(s)} {curve_text(cell[s]['held_out_curves'][0])}" for s in cell.get("sides", ["rftkit", "trl"]))
            + ".",
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
