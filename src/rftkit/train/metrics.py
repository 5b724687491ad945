"""One row of metrics per step, with OpenAI's RFT names where it has them.

train_reward_mean / valid_reward_mean and per-grader means and error rates as OpenAI
reports them; plus what an RL practitioner watches: KL, entropy, clip fraction, gradient
norm, completion lengths, the share of groups that carried no signal, and throughput.
"""

from __future__ import annotations

import re
import statistics

from rftkit.algo.advantages import informative_groups
from rftkit.train.timing import PhaseTimer
from rftkit.types import Group


def slug(name: str) -> str:
    """A grader name as a metric key part.

    >>> slug("Exact answer!")
    'exact_answer'
    """
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "grader"


def grader_metrics(graded: list, prefix: str) -> dict:
    """Per-grader means and error rates over one or more BatchGrades."""
    grades = [g for batch in graded for g in batch.grades]
    if not grades:
        return {}
    from rftkit.graders.batch import BatchGrades

    table = BatchGrades(grades, 0.0).stats()
    out = {}
    for name, figures in table.items():
        for key, value in figures.items():
            out[f"{prefix}_grader_{slug(name)}_{key}"] = value
    return out


def reward_metrics(groups: list[Group], prefix: str, pass_threshold: float) -> dict:
    rewards = [r for g in groups for r in g.rewards]
    if not rewards:
        return {}
    return {
        f"{prefix}_reward_mean": statistics.fmean(rewards),
        f"{prefix}_reward_std": statistics.pstdev(rewards),
        f"{prefix}_pass_rate": sum(r >= pass_threshold for r in rewards) / len(rewards),
    }


def episode_metrics(samples: list, prefix: str = "") -> dict:
    """Of multi-turn episodes (samples with messages): model turns and tool calls per episode,
    the share of tool calls that failed, and the share of episodes per stop reason."""
    from rftkit.types import STOP_REASONS

    episodes = [s for s in samples if s.messages]
    if not episodes:
        return {}
    calls = [c for s in episodes for c in s.output_tools]
    turns = [sum(t.role == "assistant" for t in s.trajectory.turns) for s in episodes if s.trajectory]
    row = {
        f"{prefix}episode_turns_mean": statistics.fmean(turns) if turns else 0.0,
        f"{prefix}tool_calls_mean": len(calls) / len(episodes),
        f"{prefix}tool_error_rate": sum(bool(c.get("error")) for c in calls) / len(calls) if calls else 0.0,
    }
    for reason in STOP_REASONS:
        row[f"{prefix}stop_{reason}_frac"] = sum(s.stop_reason == reason for s in episodes) / len(episodes)
    return row


def step_metrics(step: int, epoch: float, draw, timer: PhaseTimer, update_stats: dict, pass_threshold: float) -> dict:
    """The metrics row of one step: `draw` is the step's `rl.Draw` (kept, drawn and graded groups)."""
    import torch

    drawn, kept = draw.drawn, draw.kept
    samples = [s for g in drawn for s in g.samples]
    lengths = [len(s.completion_ids) for s in samples]
    rewards = torch.tensor([g.rewards for g in drawn]) if drawn else torch.zeros(0, 1)
    seconds = timer.seconds
    row = {"step": step, "epoch": round(epoch, 4)}
    row.update(reward_metrics(drawn, "train", pass_threshold))
    row.update(grader_metrics(draw.graded, "train"))
    row.update({
        "completion_length_mean": statistics.fmean(lengths) if lengths else 0.0,
        "completion_length_max": max(lengths, default=0),
        "truncated_frac": sum(s.finish_reason == "length" for s in samples) / max(len(samples), 1),
        "zero_variance_frac": float(1 - informative_groups(rewards).float().mean()) if drawn else 0.0,
        "groups_used": len(kept),
        # tokens of the groups the update used that the loss is computed on (sampled by the policy)
        "train_tokens": sum(s.trajectory.sampled_tokens for g in kept for s in g.samples),
    })
    row.update(episode_metrics(samples))
    row.update(update_stats)
    row.update(timer.metrics())
    row["samples_per_s"] = len(samples) / seconds["step"] if seconds.get("step") else 0.0
    generating = seconds.get("gen_async", seconds.get("gen"))  # asynchronous: the worker's time, not the wait
    row["tokens_per_s"] = sum(lengths) / generating if generating else 0.0
    return row
