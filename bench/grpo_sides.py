"""One side of the GRPO benchmark, run in its own fresh process:

    python bench/grpo_sides.py rftkit|trl --settings JSON --prepared JSON --out DIR

Trains for `settings.steps` steps and writes DIR/result.json: one record per step (wall
seconds, generation and reward seconds, completions, generated and trained tokens),
weight snapshots with the training clock at each, and the peak RSS. With `settings.nproc`
data-parallel processes (rftkit's ranks, or TRL under `accelerate launch`) the process of
rank 0 keeps the clock, the snapshots and the record; the counts are of all ranks' batches
and the peak RSS is the sum over the ranks.

Both sides train the same saved weights on the same prompts with the same reward, with
matched settings: GRPO group-normalised advantages, PPO clip with epsilon on both sides,
token-mean loss over the whole step's batch (TRL's default `dapo` loss type; rftkit's
`token_mean` aggregation), k3 KL to the reference as a loss term when beta > 0, constant
learning rate, AdamW, gradient clipping at 1.0, one optimizer step per generation (fully
on-policy), temperature 1 and top_p 1, fp32, denormals flushed, equal threads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpo_common import Settings, SnapshotClock, peak_rss_mb, setup_process  # noqa: E402


def rftkit_job(settings: Settings, prepared: dict) -> dict:
    """The rftkit job spec for these settings (OpenAI's job body plus the rftkit block)."""
    from rftkit.data.builtin import ADDITION_GRADER

    return {
        "model": prepared["model"],
        "training_file": str(Path(prepared["data"]) / "train.jsonl"),
        "seed": settings.seed,
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": ADDITION_GRADER,
            "hyperparameters": {"batch_size": settings.prompts_per_step, "n_epochs": 100},
        }},
        "rftkit": {
            "algorithm": "grpo",
            "group_size": settings.group_size,
            "learning_rate": settings.learning_rate,
            "max_steps": settings.steps,
            "device": "cpu",
            "loss": {"aggregation": "token_mean", "clip_low": settings.clip_epsilon,
                     "clip_high": settings.clip_epsilon},
            "kl": {"coef": settings.beta, "estimator": "k3", "placement": "loss"},
            "lora": {"enabled": settings.lora, "r": settings.lora_r, "alpha": settings.lora_alpha},
            "optimizer": {"max_grad_norm": settings.max_grad_norm},
            "lengths": {"max_prompt_tokens": 32, "max_completion_tokens": settings.max_completion_tokens},
            "eval": {"baseline": False},
            "asynchronous": {"max_staleness": settings.max_staleness},
        },
    }


def run_rftkit(settings: Settings, prepared: dict, out: Path) -> dict:
    """Under `settings.nproc` ranks (RANK / WORLD_SIZE set by the bench) every rank trains and
    rank 0 keeps the clock, the snapshots and the record."""
    from rftkit.config import parse_job
    from rftkit.scale.parallel import Parallel
    from rftkit.train.rl_job import ReinforcementRun

    parallel = Parallel.from_environment()
    run = ReinforcementRun(parse_job(rftkit_job(settings, prepared), "bench"), out, base_dir=None, log=lambda m: None,
                           parallel=parallel)
    run.start(None)
    clock, steps = SnapshotClock(out, settings.snapshot_every), []
    clock.maybe_snapshot(0, run.trainer.model)
    for step in range(1, settings.steps + 1):
        begin = time.perf_counter()
        outcome = run.trainer.step()
        seconds = time.perf_counter() - begin
        m = outcome.metrics
        samples = [(g, s) for g in outcome.groups for s in g.samples]
        steps.append({"seconds": seconds, "gen": m["time_gen"], "reward": m["time_reward"],
                      "completions": len(samples),
                      "generated_tokens": sum(len(s.completion_ids) for _, s in samples),
                      "trained_tokens": sum(len(g.prompt_ids) + len(s.completion_ids) for g, s in samples),
                      "reward_mean": m["train_reward_mean"]})
        if parallel.is_main:
            clock.maybe_snapshot(step, run.trainer.model)
    run.trainer.close()
    rss = parallel.gather([peak_rss_mb()])  # the job's memory: every rank's
    parallel.close()
    return {"steps": steps, "snapshots": clock.snapshots, "rank": parallel.rank, "peak_rss_mb": sum(rss)}


def trl_dataset(prepared: dict):
    from datasets import Dataset

    from rftkit.data.validate import load_examples

    examples = load_examples(Path(prepared["data"]) / "train.jsonl", "reinforcement")
    return Dataset.from_list([{"prompt": e.prompt_messages, "answer": e.item["answer"]} for e in examples])


def addition_reward_trl(prompts, completions, answer, **_):
    """The same reward as rftkit's grader, in TRL's reward-function signature."""
    from rftkit.data.builtin import addition_reward

    return [addition_reward(None, c[0]["content"], {"answer": a}) for c, a in zip(completions, answer)]


def trl_config(settings: Settings, out: Path):
    """TRL's config for these settings. Under `settings.nproc` processes each generates and trains
    its share of the step's batch: the global batch (TRL's generation batch, per process x
    processes) stays `completions_per_step`, whole groups, one optimizer step per generation."""
    from trl import GRPOConfig

    # TRL checks that its generation batch (here the global batch) is whole groups of num_generations;
    # the global batch is unchanged only if it splits evenly over the processes
    if settings.completions_per_step % settings.nproc:
        raise ValueError(f"{settings.completions_per_step} completions per step do not split over "
                         f"{settings.nproc} processes")
    return GRPOConfig(
        output_dir=str(out / "trl"), use_cpu=True, bf16=False, fp16=False, seed=settings.seed,
        max_steps=settings.steps, per_device_train_batch_size=settings.completions_per_step // settings.nproc,
        gradient_accumulation_steps=1, num_generations=settings.group_size,
        max_completion_length=settings.max_completion_tokens, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=settings.learning_rate, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=settings.max_grad_norm, beta=settings.beta, epsilon=settings.clip_epsilon,
        loss_type="dapo", scale_rewards="group", num_iterations=1, gradient_checkpointing=False,
        save_strategy="no", report_to=[], logging_steps=10, disable_tqdm=True, dataloader_num_workers=0,
        log_completions=False,
        # every trainable parameter takes part in the loss; TRL's default (True) would make DDP walk the
        # autograd graph each step looking for unused ones
        ddp_find_unused_parameters=False,
    )


def run_trl(settings: Settings, prepared: dict, out: Path) -> dict:
    """TRL's GRPOTrainer, in one process or in each of the processes `accelerate launch` starts."""
    import torch
    from accelerate.utils import gather_object
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from rftkit.models.load import load_policy

    class TimedGRPOTrainer(GRPOTrainer):
        """TRL's trainer, unchanged but for timers around generation and reward scoring."""

        timers = {"gen": 0.0, "reward": 0.0, "generated": 0, "trained": 0, "completions": 0, "rewards": []}

        def _generate_single_turn(self, *args, **kwargs):
            begin = time.perf_counter()
            try:
                return super()._generate_single_turn(*args, **kwargs)
            finally:
                self.timers["gen"] += time.perf_counter() - begin

        def _calculate_rewards(self, *args, **kwargs):
            begin = time.perf_counter()
            try:
                rewards = super()._calculate_rewards(*args, **kwargs)  # gathered: every process's rows
                self.timers["rewards"].append(float(rewards.sum(-1).mean()))
                return rewards
            finally:
                self.timers["reward"] += time.perf_counter() - begin

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            # this process's share of the batch, summed over the processes: the step's global counts
            counts = torch.tensor([output["completion_ids"].shape[0], int(output["completion_mask"].sum()),
                                   int(output["prompt_mask"].sum())], device=output["completion_ids"].device)
            completions, generated, prompt_tokens = self.accelerator.reduce(counts, reduction="sum").tolist()
            self.timers["generated"] += generated
            self.timers["trained"] += generated + prompt_tokens
            self.timers["completions"] += completions
            return output

    model, tokenizer = load_policy(prepared["model"], "cpu")
    peft_config = None
    if settings.lora:
        peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    clock, steps = SnapshotClock(out, settings.snapshot_every), []

    class Recorder(TrainerCallback):
        """Steps and snapshots, on the main process only."""

        def on_train_begin(self, args, state, control, **kw):
            if state.is_world_process_zero:
                clock.maybe_snapshot(0, trainer.model)
            self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            t = trainer.timers
            if state.is_world_process_zero:
                steps.append({"seconds": now - self.last, "gen": t["gen"], "reward": t["reward"],
                              "completions": t["completions"], "generated_tokens": t["generated"],
                              "trained_tokens": t["trained"],
                              "reward_mean": t["rewards"][-1] if t["rewards"] else None})
                clock.maybe_snapshot(state.global_step, trainer.model)
            t.update(gen=0.0, reward=0.0, generated=0, trained=0, completions=0)
            self.last = time.perf_counter()

    trainer = TimedGRPOTrainer(model=model, reward_funcs=addition_reward_trl, args=trl_config(settings, out),
                               train_dataset=trl_dataset(prepared), processing_class=tokenizer,
                               peft_config=peft_config, callbacks=[Recorder()])
    trainer.train()
    rss = gather_object([peak_rss_mb()])  # the job's memory: every process's
    rank = trainer.accelerator.process_index
    trainer.accelerator.end_training()
    return {"steps": steps, "snapshots": clock.snapshots, "rank": rank, "peak_rss_mb": sum(rss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("side", choices=["rftkit", "trl"])
    parser.add_argument("--settings", required=True)
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    settings, prepared = Settings.from_json(args.settings), json.loads(args.prepared)
    args.out.mkdir(parents=True, exist_ok=True)
    setup_process(settings)
    begin = time.perf_counter()
    result = (run_rftkit if args.side == "rftkit" else run_trl)(settings, prepared, args.out)
    result = {"peak_rss_mb": peak_rss_mb(), **result, "side": args.side, "total_seconds": time.perf_counter() - begin}
    if result.pop("rank", 0) == 0:
        (args.out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
