"""Where one rftkit GRPO step spends its time: phases, then the torch profiler's top operators.

    python bench/grpo_profile.py [--preset S] [--threads 2] [--warmup 3] [--lora] [--beta 0.04]

Uses the benchmark's prepared base model and settings (see grpo_vs_trl.py), runs a few
warm-up steps, then profiles one step. The phase table comes from the trainer's own timers;
the operator table is torch.profiler's self CPU time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpo_common import Settings, learning_rate, prepare, setup_process  # noqa: E402
from grpo_sides import rftkit_job  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="S")
    parser.add_argument("--threads", type=int, default=Settings().threads)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--lora", action="store_true", help="LoRA instead of full fine-tuning")
    parser.add_argument("--beta", type=float, default=0.0, help="KL coefficient (k3, in the loss)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    import torch.profiler as tp

    from rftkit.config import parse_job
    from rftkit.train.rl_job import ReinforcementRun

    settings = Settings(preset=args.preset, threads=args.threads, steps=args.warmup + 1, lora=args.lora,
                        beta=args.beta, learning_rate=learning_rate(args.preset, args.lora))
    prepared = prepare(args.work / "prepared", args.preset)
    setup_process(settings)
    run = ReinforcementRun(parse_job(rftkit_job(settings, prepared), "profile"), args.work / "profile",
                           base_dir=None, log=lambda m: None)
    run.start(None)
    for _ in range(args.warmup):
        run.trainer.step()
    with tp.profile(activities=[tp.ProfilerActivity.CPU]) as profile:
        metrics = run.trainer.step().metrics
    step = metrics["time_step"]
    print(f"one step of {settings.completions_per_step} completions ({settings.label}, {args.threads} threads): "
          f"{step:.3f} s")
    for phase in ("gen", "reward", "ref", "adv", "update_actor"):
        if f"time_{phase}" in metrics:
            print(f"  {phase:13} {metrics[f'time_{phase}']:.3f} s  {metrics[f'time_{phase}'] / step:6.1%}")
    print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
