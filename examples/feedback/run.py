"""Feedback -> reward model -> PPO, in one command, on a CPU in a few minutes.

    python examples/feedback/run.py [--out runs/feedback] [--seed 0] [--ppo-steps 40]

1. warm start: a tiny model learns single-digit sums from labelled rows in which, as in the
   wild, some answers are wrong, some end politely (" thank you") and some carry a banned
   word ("damn") — so the policy starts out doing all of these;
2. samples: the policy answers the training prompts (8 samples each, twice), written as a
   run's samples.jsonl; its distinct answers become comparison items in a FeedbackStore;
3. feedback: the scripted reviewer (reviewer.py) judges every item — preferred answer,
   accuracy and tone ratings, unsafe flags — through the store, which exports feedback.jsonl;
4. reward model: `train_reward_model` (what `rftkit rm train` runs) on the policy's body,
   calibrated, measured on held-out items;
5. PPO against the reward model, KL-penalised in the reward; the reviewer's own score is
   logged next to it every step as a check grader (weight 0);
6. held-out check: on 20 prompts never used for feedback or RL, the reviewer's mean rating,
   the unsafe rate and KL to the starting policy, before and after.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from reviewer import BANNED, POLITE, is_correct, is_polite, is_unsafe, judge, overall  # noqa: E402

from rftkit.monitor.console import console  # noqa: E402

# The PPO reward's weights over the RM's heads. Not `accuracy`: its held-out pairwise accuracy is
# near chance (a 1M-parameter model does not learn to check sums from a few hundred answers), and
# a head that cannot tell right from wrong only adds noise for the policy to chase.
CRITERIA = {"preference": 0.6, "safe": 0.4}


def write_data(out: Path, seed: int) -> dict[str, list[str]]:
    """Prompts split 80 / 20, and warm-start rows over all 100 sums (the base model's knowledge)."""
    from rftkit.data.builtin import write_jsonl

    rng = random.Random(seed)
    prompts = [f"{a}+{b}=" for a in range(10) for b in range(10)]
    rng.shuffle(prompts)
    split = {"train": prompts[:80], "valid": prompts[80:]}
    for name, rows in split.items():
        write_jsonl(out / f"{name}.jsonl", [{"messages": [{"role": "user", "content": p}]} for p in rows])
    sft = []
    for prompt in prompts:
        total = eval(prompt[:-1])  # noqa: S307 (our own "a+b")
        for _ in range(8):
            number = total if rng.random() < 0.9 else max(0, total + rng.choice((-1, 1)))
            suffix = rng.choices([POLITE, f" {BANNED}", ""], weights=[0.3, 0.3, 0.4])[0]
            sft.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": f"{number}{suffix}"}]})
    write_jsonl(out / "sft.jsonl", sft)
    return split


def warm_start_policy(out: Path, seed: int) -> Path:
    from rftkit.cli.model import warm_start
    from rftkit.models.load import save_policy
    from rftkit.models.tiny import build_tiny

    model, tokenizer = build_tiny("tiny", seed)
    warm_start(model, tokenizer, out / "sft.jsonl", None, steps=400, lr=3e-3, batch_size=32, seed=seed)
    return save_policy(model, tokenizer, out / "policy")


def sample(model_dir: Path, prompts: list[str], per_prompt: int, seed: int):
    """Groups of `per_prompt` samples (temperature 1) for each prompt."""
    from rftkit.data.chat import encode_prompt
    from rftkit.models.load import load_policy
    from rftkit.rollout.groups import sample_groups
    from rftkit.rollout.hf import SamplingParams, stop_token_ids
    from rftkit.types import Example

    model, tokenizer = load_policy(str(model_dir), "cpu")
    examples = [Example([{"role": "user", "content": p}], {}, line=i + 1) for i, p in enumerate(prompts)]
    ids = [encode_prompt(tokenizer, e) for e in examples]
    generator = torch.Generator().manual_seed(seed)
    return sample_groups(model, tokenizer, examples, ids, per_prompt, SamplingParams(12), stop_ids=stop_token_ids(model, tokenizer),
                         generator=generator)


def write_samples(out: Path, model_dir: Path, prompts: list[str], rounds: int, seed: int) -> Path:
    """A samples.jsonl shaped like a run's: one row per sample, grouped by step and prompt."""
    path = out / "samples.jsonl"
    with path.open("w") as handle:
        for step in range(1, rounds + 1):
            for group in sample(model_dir, prompts, 8, seed + step):
                for index, s in enumerate(group.samples):
                    handle.write(json.dumps({"step": step, "split": "train", "line": group.example.line,
                                             "prompt": group.example.messages, "sample": index,
                                             "completion": s.output_text, "reward": None}) + "\n")
    return path


def collect_feedback(out: Path, samples: Path):
    """Items from the samples into a store; the scripted reviewer judges each; export JSONL."""
    from rftkit.feedback import FeedbackStore, Judgement
    from rftkit.feedback.samples import items_from_samples

    (out / "feedback.db").unlink(missing_ok=True)
    store = FeedbackStore(f"sqlite:///{out / 'feedback.db'}", criteria=["accuracy", "tone"])
    items = items_from_samples(samples, max_answers=4)
    store.add_items(items)
    for item in items:
        verdict = judge(item.prompt[-1]["content"], [a.text for a in item.answers])
        store.record_judgement(Judgement(item.item_id, "scripted-reviewer", **verdict))
    store.export_jsonl(out / "feedback.jsonl")
    records = store.records()
    pairs = sum(len(r.item.answers) - 1 for r in records if r.judgement.preferred is not None)
    console.print(f"feedback: {len(items)} items, {pairs} preference pairs -> {out / 'feedback.jsonl'}")
    return records, pairs


def train_rm(out: Path, records, base: Path, seed: int) -> dict:
    from rftkit.feedback.training import RMOptions, train_reward_model

    options = RMOptions(learning_rate=1e-3, epochs=12, patience=3, batch_size=16, seed=seed, device="cpu")
    return train_reward_model(records, str(base), out / "rm", options, console.print)


def ppo_job(out: Path, policy: Path, steps: int, seed: int) -> dict:
    grader = {"type": "multi", "name": "ppo reward", "calculate_output": "rm",
              "graders": {"rm": {"type": "reward_model", "path": str(out / "rm"), "criteria": CRITERIA},
                          "reviewer": {"type": "function", "function": "reviewer.py:reviewer_score"}}}
    return {
        "model": str(policy), "training_file": str(out / "train.jsonl"), "seed": seed,
        "method": {"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": {"batch_size": 16}}},
        "rftkit": {"algorithm": "ppo", "group_size": 4, "learning_rate": 1e-4, "max_steps": steps,
                   "kl": {"coef": 0.2, "placement": "reward"}, "ppo": {"epochs": 2},
                   "lengths": {"max_prompt_tokens": 32, "max_completion_tokens": 12},
                   "eval": {"baseline": False}, "device": "cpu",
                   "checkpoints": {"interval": steps, "keep_last": 1, "keep_best": 0}},
    }


def held_out(model_dir: Path, reference_dir: Path, prompts: list[str], seed: int) -> dict:
    """The reviewer's view of 8 samples per held-out prompt, and KL(model || reference) per answer."""
    groups = sample(model_dir, prompts, 8, seed)
    answers = [(g.example.messages[-1]["content"], s) for g in groups for s in g.samples]
    share = lambda test: sum(test(p, s.output_text) for p, s in answers) / len(answers)  # noqa: E731
    return {
        "reviewer_rating": share(overall),
        "reviewer_score": share(lambda p, a: (overall(p, a) - 1) / 4),
        "unsafe_rate": share(lambda p, a: is_unsafe(a)),
        "correct_rate": share(is_correct),
        "polite_rate": share(lambda p, a: is_polite(a) and not is_unsafe(a)),
        "kl_to_start": kl_to_reference(groups, reference_dir),
        "examples": [s.output_text for _, s in answers[:6]],
    }


@torch.no_grad()
def kl_to_reference(groups, reference_dir: Path) -> float:
    """Mean over answers of sum_t (log p_model - log p_reference): a k1 estimate of the
    sequence-level KL, the answers being the model's own samples."""
    from rftkit.models.load import load_policy
    from rftkit.train.logprobs import completion_logprobs, pack

    reference, tokenizer = load_policy(str(reference_dir), "cpu")
    samples = [s for g in groups for s in g.samples]
    batch = pack([g.prompt_ids for g in groups for _ in g.samples], [s.completion_ids for s in samples],
                 tokenizer.pad_token_id, torch.device("cpu"))
    reference_NC = completion_logprobs(reference, batch).logprobs_NC
    model_N = torch.tensor([sum(s.logprobs) for s in samples])
    return float((model_N - reference_NC.sum(-1)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/feedback"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ppo-steps", type=int, default=40)
    args = parser.parse_args()
    from rftkit.models.load import setup_cpu
    from rftkit.train.rl_job import run_reinforcement_job
    from rftkit.config import parse_job

    started, out = time.perf_counter(), args.out
    out.mkdir(parents=True, exist_ok=True)
    setup_cpu()
    split = write_data(out, args.seed)
    policy = warm_start_policy(out, args.seed)
    samples = write_samples(out, policy, split["train"], rounds=3, seed=args.seed)
    records, pairs = collect_feedback(out, samples)
    rm = train_rm(out, records, policy, args.seed)
    before = held_out(policy, policy, split["valid"], args.seed + 100)
    summary = run_reinforcement_job(parse_job(ppo_job(out, policy, args.ppo_steps, args.seed)), out / "ppo",
                                    overwrite=True, base_dir=HERE)
    after = held_out(Path(summary.model_dir), policy, split["valid"], args.seed + 100)
    report(out, rm, pairs, before, after, time.perf_counter() - started)


def report(out: Path, rm: dict, pairs: int, before: dict, after: dict, seconds: float) -> None:
    from rich.table import Table

    rows = [json.loads(line) for line in (out / "ppo" / "metrics.jsonl").read_text().splitlines()]
    results = {"preference_pairs": pairs, "rm": rm["heads"], "before": before, "after": after, "seconds": round(seconds),
               "ppo_first": {k: rows[0].get(k) for k in ("train_reward_mean", "train_grader_reviewer_mean")},
               "ppo_last": {k: rows[-1].get(k) for k in ("train_reward_mean", "train_grader_reviewer_mean", "kl")}}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    pref = rm["heads"]["preference"]
    console.print(f"reward model: held-out pairwise accuracy {pref['pairwise_accuracy']:.1%} on {pref['pairs']} pairs, "
                  f"ECE {pref['ece_raw']:.3f} raw -> {pref['ece']:.3f} calibrated")
    table = Table("held-out (20 prompts x 8)", "reviewer rating (1-5)", "unsafe", "correct", "polite", "KL to start",
                  title="the scripted reviewer's verdict")
    for name, r in (("before PPO", before), ("after PPO", after)):
        table.add_row(name, f"{r['reviewer_rating']:.2f}", f"{r['unsafe_rate']:.1%}", f"{r['correct_rate']:.1%}",
                      f"{r['polite_rate']:.1%}", f"{r['kl_to_start']:.3f}")
    console.print(table)
    console.print(f"samples after: {after['examples']}; total {seconds:.0f} s; results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
