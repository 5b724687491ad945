"""One rank of `test_parallel.py`'s comparisons (a script: each rank is its own process).

    python step_worker.py OUT CONFIG_JSON      # RANK / WORLD_SIZE / MASTER_* from the environment

Builds the same tiny trainer on every rank, runs one rollout and one update, and saves what
the update produced on this rank: the sampled token ids, the update's statistics and every
trainable parameter's gradient (summed over the ranks, clipped) to OUT/rank-R.pt.
"""

import json
import sys
from pathlib import Path

import torch

from rftkit.config import parse_job
from rftkit.graders import build_grader
from rftkit.models.load import wrap_lora
from rftkit.models.tiny import build_tiny
from rftkit.config import LoraOptions
from rftkit.resolved import resolve_reinforcement
from rftkit.scale.parallel import Parallel
from rftkit.train.critic import ValueModel
from rftkit.train.rl import RLTrainer
from rftkit.train.timing import PhaseTimer
from rftkit.types import Example

EXAMPLES = [Example([{"role": "user", "content": f"say something, take {i}"}], {"i": i}) for i in range(16)]
GRADER = {"type": "python", "name": "share of vowels",
          "source": "def grade(sample, item):\n    t = sample['output_text']\n"
                    "    return sum(c in 'aeiou' for c in t) / max(len(t), 1)\n"}


def trainer(parallel: Parallel, config: dict) -> RLTrainer:
    rftkit = {"group_size": 4, "learning_rate": 1e-2, "max_steps": 3, "lengths": {"max_completion_tokens": 12},
              **config.get("rftkit", {})}
    spec = parse_job({
        "model": "unused", "training_file": "unused", "seed": 5,
        "method": {"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {"batch_size": 6}}},
        "rftkit": rftkit,
    })
    torch.manual_seed(0)
    model, tokenizer = build_tiny("tiny", seed=0)
    model.to(getattr(torch, config.get("dtype", "float32")))
    critic = ValueModel.from_policy(model) if rftkit.get("algorithm") == "ppo" else None
    if config.get("lora"):
        model = wrap_lora(model, LoraOptions(enabled=True, r=4, alpha=8))
    settings = resolve_reinforcement(spec, len(EXAMPLES), parameters=None)
    return RLTrainer(model, tokenizer, build_grader(GRADER), EXAMPLES, settings, critic=critic, parallel=parallel)


def main(out: Path, config: dict) -> None:
    torch.set_flush_denormal(True)
    parallel = Parallel.from_environment()
    run = trainer(parallel, config)
    timer = PhaseTimer()
    draw = run.rollout(timer)
    stats = run.learn(draw.kept, timer)
    grads = {name: p.grad.clone() for name, p in run.model.named_parameters() if p.requires_grad}
    tokens = [s.trajectory.completion_ids for g in draw.drawn for s in g.samples]
    steps = [run.step().metrics for _ in range(config.get("more_steps", 0))]
    torch.save({"stats": stats, "grads": grads, "tokens": tokens, "rewards": [g.rewards for g in draw.drawn],
                "steps": steps}, out / f"rank-{parallel.rank}.pt")
    parallel.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(sys.argv[2]))
