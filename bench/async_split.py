"""Where do the cores go: synchronous against asynchronous rollouts, in one process and on Ray.

    python bench/async_split.py --work runs/async-split --steps 30

Trains the bench's S preset (the warm-started base of `grpo_common.prepare`, the same GRPO
settings as `grpo_sides.rftkit_job`) with `rftkit train` five ways, one after another on this
machine, and prints the median seconds per step (the first step left out), as a ratio to the
synchronous one-process run of the same invocation, with its phases:

- `sync`: one process, generation then update, every thread on each;
- `async`: one process, a worker thread samples step t+1 while step t trains (half the threads each);
- `ray sync`: `--ray`, one rollout actor of 1 CPU and one grader actor;
- `ray async`: the same actor samples step t+1 while the trainer (1 thread) updates on step t;
- `ray async, no recompute`: as above with `rollout_correction: off`, so that the sampler's
  log-probs (exact here: the actor runs the same lean forward) are the old ones and the trainer
  skips the recomputation pass.

Nothing is compared with TRL here: this is rftkit against itself, to see whether splitting the
machine's cores between a generating and a training process pays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from grpo_common import Settings, prepare  # noqa: E402
from grpo_sides import rftkit_job  # noqa: E402

# name: (max_staleness, --ray, rollout_correction mode, trainer threads: None for all)
WAYS = {"sync": (0, False, "auto", None), "async": (1, False, "auto", None), "ray sync": (0, True, "auto", None),
        "ray async": (1, True, "auto", 1), "ray async, no recompute": (1, True, "off", 1)}
PHASES = ("time_gen", "time_gen_async", "time_old_log_prob", "time_update_actor")


def job_file(work: Path, name: str, steps: int, prepared: dict) -> Path:
    staleness, _, correction, _ = WAYS[name]
    job = rftkit_job(Settings(steps=steps, max_staleness=staleness), prepared)
    job["rftkit"].update(ray={"rollout_actors": 1, "grader_actors": 1}, checkpoints={"interval": 10_000},
                         rollout_correction={"mode": correction})
    path = work / f"{name.replace(' ', '-').replace(',', '')}.yaml"
    path.write_text(json.dumps(job))
    return path


def train(work: Path, name: str, job: Path) -> dict:
    """Run one way; its median seconds per step and phases, and the mean train reward of the last 5 steps."""
    _, ray, _, threads = WAYS[name]
    out = work / job.stem
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONWARNINGS": "ignore"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "rftkit.cli", "train", str(job), "--out", str(out), "--force", "--overwrite"]
    done = subprocess.run(command + (["--ray"] if ray else []), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]
    figures = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in ("time_step", *PHASES)}
    figures["reward"] = statistics.mean(r["train_reward_mean"] for r in rows[-5:])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/async-split"))
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    prepared = prepare(args.work, "S")
    print(f"| way | s/step | over sync's | {' | '.join(p.removeprefix('time_') for p in PHASES)} "
          "| train reward, last 5 steps |")
    print("|---|---:|---:|" + "---:|" * len(PHASES) + "---:|")
    sync = None
    for name in WAYS:
        f = train(args.work, name, job_file(args.work, name, args.steps, prepared))
        sync = sync or f["time_step"]
        print(f"| {name} | {f['time_step']:.3f} | {f['time_step'] / sync:.2f}x | "
              f"{' | '.join(f'{f[p]:.3f}' for p in PHASES)} | {f['reward']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
