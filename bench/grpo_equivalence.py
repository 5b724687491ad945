"""Before any timing: do rftkit and TRL compute the same loss and gradient?

    python bench/grpo_equivalence.py --prepared JSON [--beta 0.04] [--lora]

Both sides get identical weights, one fixed batch of completions (sampled once, with
rftkit's sampler) and the rewards the grader gave them. rftkit runs its production update
path (`RLTrainer.learn` with a zero learning rate); TRL runs `GRPOTrainer.compute_loss` on
the batch laid out as its own `_generate_and_score_completions` lays it out (left-padded
prompts, right-padded completions, group-normalised advantages computed with its formula,
reference log-probs from its own `_get_per_token_logps_and_entropies`). With beta > 0 the
policy starts from slightly perturbed weights, so that the KL term is not trivially zero.
Prints both losses and gradient norms and exits 1 if they differ by more than 1e-4.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpo_common import Settings, setup_process  # noqa: E402
from grpo_sides import addition_reward_trl, rftkit_job, trl_config, trl_dataset  # noqa: E402

TOLERANCE = 1e-4


def fixed_batch(run, prompts: int, seed: int):
    from rftkit.graders.batch import grade_groups

    """Groups of completions sampled once from the starting policy, graded."""
    trainer = run.trainer
    trainer.generator.manual_seed(seed)
    groups = trainer.sample(list(range(prompts)))
    grade_groups(trainer.grader, groups)
    return groups


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.02) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * scale * param.std().clamp(min=1e-3))


def rftkit_side(settings: Settings, prepared: dict, out: Path):
    from rftkit.config import parse_job
    from rftkit.train.rl_job import ReinforcementRun
    from rftkit.train.timing import PhaseTimer

    run = ReinforcementRun(parse_job(rftkit_job(settings, prepared), "bench"), out, base_dir=None, log=lambda m: None)
    run.start(None)
    groups = fixed_batch(run, settings.prompts_per_step, settings.seed)
    if settings.beta > 0:
        perturb(run.trainer.model, settings.seed)
    start = {k: v.detach().clone() for k, v in run.trainer.model.state_dict().items()}
    for group in run.trainer.optimizer.param_groups:
        group["lr"] = 0.0  # measure the gradient, move nothing
    stats = run.trainer.learn(groups, PhaseTimer())
    return groups, start, stats["loss"], stats["grad_norm"]


def trl_inputs(trainer, groups, pad_id: int, group_size: int) -> dict:
    """The batch in the layout of TRL's `_generate_and_score_completions` output."""
    prompts = [torch.tensor(g.prompt_ids) for g in groups for _ in g.samples]
    completions = [torch.tensor(s.completion_ids) for g in groups for s in g.samples]
    width = max(len(p) for p in prompts)
    prompt_ids = torch.stack([torch.cat([torch.full((width - len(p),), pad_id), p]) for p in prompts])
    prompt_mask = torch.stack([torch.cat([torch.zeros(width - len(p)), torch.ones(len(p))]) for p in prompts]).long()
    completion_ids = torch.nn.utils.rnn.pad_sequence(completions, batch_first=True, padding_value=pad_id)
    completion_mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(c)) for c in completions], batch_first=True).long()
    rewards = torch.tensor([r for g in groups for r in g.rewards])
    # TRL's advantage formula (grpo_trainer.py, scale_rewards="group")
    grouped = rewards.view(-1, group_size)
    advantages = (rewards - grouped.mean(1).repeat_interleave(group_size)) / (
        grouped.std(1).repeat_interleave(group_size) + 1e-4)
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
              "completion_mask": completion_mask, "advantages": advantages,
              "num_items_in_batch": completion_mask.sum()}
    if trainer.beta != 0.0:
        with torch.no_grad():
            inputs["ref_per_token_logps"], _, _ = trainer._get_per_token_logps_and_entropies(
                trainer.ref_model if trainer.ref_model is not None else trainer.model,
                torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1),
                completion_ids.size(1))
    return inputs


def trl_side(settings: Settings, prepared: dict, out: Path, groups, policy_state: dict):
    from peft import LoraConfig
    from trl import GRPOTrainer

    from rftkit.models.load import load_policy

    model, tokenizer = load_policy(prepared["model"], "cpu")
    peft_config = None
    if settings.lora:
        peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=addition_reward_trl, args=trl_config(settings, out),
                          train_dataset=trl_dataset(prepared), processing_class=tokenizer, peft_config=peft_config)
    trainer.model.load_state_dict(policy_state)  # the reference keeps the unperturbed base
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = trl_inputs(trainer, groups, tokenizer.pad_token_id, settings.group_size)
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    params = [p for p in trainer.model.parameters() if p.grad is not None]
    grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    return float(loss), float(grad_norm)


def check(settings: Settings, prepared: dict, out: Path) -> dict:
    setup_process(settings)
    groups, state, loss, grad_norm = rftkit_side(settings, prepared, out / "rftkit")
    trl_loss, trl_grad_norm = trl_side(settings, prepared, out / "trl", groups, state)
    rewards = [r for g in groups for r in g.rewards]
    return {"label": settings.label, "completions": len(rewards), "reward_mean": sum(rewards) / len(rewards),
            "rftkit_loss": loss, "trl_loss": trl_loss, "rftkit_grad_norm": grad_norm, "trl_grad_norm": trl_grad_norm,
            "loss_diff": abs(loss - trl_loss), "grad_norm_diff": abs(grad_norm - trl_grad_norm),
            "ok": abs(loss - trl_loss) <= TOLERANCE and abs(grad_norm - trl_grad_norm) <= TOLERANCE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", required=True, help="JSON from grpo_common.prepare")
    parser.add_argument("--preset", default="S")
    parser.add_argument("--beta", type=float, default=0.0)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/equivalence"))
    args = parser.parse_args()
    settings = Settings(preset=args.preset, beta=args.beta, lora=args.lora, prompts_per_step=4)
    result = check(settings, json.loads(args.prepared), args.out)
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
