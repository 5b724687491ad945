"""report.html: one self-contained page (inline SVG, no scripts, no CDN) for a run.

Built from the run directory's files alone (metrics.jsonl, samples.jsonl, baseline.json,
final.json, summary.json), so it can be rebuilt at any time: `rftkit report DIR`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d"]


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], width: int = 460, height: int = 220) -> str:
    """An SVG line chart of several (x, y) series with a legend; empty series are left out."""
    series = {name: points for name, points in series.items() if points}
    if not series:
        return ""
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    left, right, top, bottom = 48, 10, 28, 30
    sx = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)  # noqa: E731
    sy = lambda y: height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)  # noqa: E731
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
             f'<text x="{left}" y="16" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#999"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#999"/>',
             f'<text x="{left - 4}" y="{sy(y1) + 4}" text-anchor="end" font-size="10">{y1:.3g}</text>',
             f'<text x="{left - 4}" y="{sy(y0) + 4}" text-anchor="end" font-size="10">{y0:.3g}</text>',
             f'<text x="{left}" y="{height - 12}" font-size="10">{x0:g}</text>',
             f'<text x="{width - right}" y="{height - 12}" text-anchor="end" font-size="10">step {x1:g}</text>']
    for index, (name, points) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        if len(points) == 1:
            x, y = points[0]
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>')
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>')
        parts.append(f'<text x="{width - right - 4}" y="{top + 12 * index}" text-anchor="end" font-size="10" '
                     f'fill="{color}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _points(rows: list[dict], key: str) -> list[tuple[float, float]]:
    return [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]


def _charts(rows: list[dict]) -> str:
    grader_keys = sorted({k for r in rows for k in r if k.startswith("train_grader_") and k.endswith("_mean")})
    charts = [
        line_chart("Reward", {"train": _points(rows, "train_reward_mean"), "valid": _points(rows, "valid_reward_mean")}),
        line_chart("Per grader (train)", {k.removeprefix("train_grader_").removesuffix("_mean"): _points(rows, k)
                                          for k in grader_keys}),
        line_chart("KL to reference", {"kl": _points(rows, "kl")}),
        line_chart("Entropy", {"entropy": _points(rows, "entropy")}),
        line_chart("Completion length", {"mean": _points(rows, "completion_length_mean"),
                                         "max": _points(rows, "completion_length_max")}),
        line_chart("Seconds per step", {"step": _points(rows, "time_step")}),
        line_chart("Episodes", {"turns": _points(rows, "episode_turns_mean"),
                                "tool calls": _points(rows, "tool_calls_mean"),
                                "tool errors": _points(rows, "tool_error_rate")}),
    ]
    return "".join(f'<div class="chart">{c}</div>' for c in charts if c)


def _evaluation_table(baseline: dict | None, final: dict | None) -> str:
    if not baseline and not final:
        return "<p>No validation set: no evaluation.</p>"
    keys = [("pass_at_1", "pass@1", "{:.1%}"), ("pass_at_k", "pass@k", "{:.1%}"), ("greedy_pass", "greedy", "{:.1%}"),
            ("reward_mean", "mean reward", "{:.3f}")]
    head = "<tr><th></th>" + "".join(f"<th>{label}</th>" for _, label, _ in keys) + "</tr>"
    body = "".join(
        f"<tr><td>{name}</td>" + "".join(f"<td>{'' if d.get(k) is None else fmt.format(d[k])}</td>"
                                         for k, _, fmt in keys) + "</tr>"
        for name, d in (("baseline", baseline), ("final", final)) if d
    )
    k = (final or baseline).get("k")
    return f"<table>{head}{body}</table><p>k = {k}; prompts: {(final or baseline).get('prompts')}</p>"


def _answer(row: dict) -> str:
    """A sample's answer as HTML: its text, or for an episode its turns after the prompt (the
    model's text and tool calls, each tool's result) and why it stopped."""
    if not row.get("messages"):
        return html.escape(row["completion"])
    turns = row["messages"]
    start = next((i for i, m in enumerate(turns) if m.get("role") == "assistant"), len(turns))
    parts = []
    for message in turns[start:]:
        calls = " ".join(f"{c['function']['name']}({c['function']['arguments']})" for c in message.get("tool_calls") or [])
        text = " ".join(t for t in (message.get("content") or "", calls) if t)
        parts.append(f"<div><b>{html.escape(message['role'])}</b> {html.escape(text)}</div>")
    return "".join(parts) + f"<div><i>stopped: {html.escape(str(row.get('stop_reason')))}</i></div>"


def _before_after(samples: list[dict], limit: int = 12) -> str:
    first = lambda split: {r["line"]: r for r in samples if r["split"] == split and r["sample"] == 0}  # noqa: E731
    before, after = first("baseline"), first("final")
    lines = [line for line in before if line in after][:limit]
    if not lines:
        return ""
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{:.2f}</td><td>{}</td><td>{:.2f}</td></tr>".format(
            html.escape(str(before[line]["prompt"][-1]["content"])), _answer(before[line]),
            before[line]["reward"], _answer(after[line]), after[line]["reward"])
        for line in lines
    )
    return ("<h2>The same prompts, before and after</h2><table><tr><th>prompt</th><th>before</th><th>reward</th>"
            f"<th>after</th><th>reward</th></tr>{rows}</table>")


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse}"
         "td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}.chart{display:inline-block;margin:6px}"
         "code{background:#f3f3f3}")


def write_report(out: Path, summary: dict | None = None) -> Path:
    """Write out/report.html from the run's files (summary.json unless a summary is given)."""
    rows = _read_jsonl(out / "metrics.jsonl")
    samples = _read_jsonl(out / "samples.jsonl")
    load = lambda name: json.loads((out / name).read_text()) if (out / name).exists() else None  # noqa: E731
    info = summary if summary is not None else load("summary.json") or {}
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in info.get("warnings", []))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>rftkit run {html.escape(out.name)}</title>"
        f"<style>{STYLE}</style></head><body><h1>rftkit run <code>{html.escape(str(out))}</code></h1>"
        f"<p>{info.get('steps', len(rows))} steps; {info.get('train_rows', '?')} training prompts, "
        f"{info.get('valid_rows', '?')} validation prompts; {info.get('seconds_per_step', '?')} s/step, "
        f"{info.get('samples_per_s', '?')} samples/s.</p>"
        f"<h2>Evaluation</h2>{_evaluation_table(load('baseline.json'), load('final.json'))}"
        f"<h2>Training</h2>{_charts(rows)}"
        + (f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else "")
        + _before_after(samples) + "</body></html>"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
