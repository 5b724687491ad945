"""What a reinforcement run is built from: its prompts (and a warning when they are few for the plan),
and its models (policy, reference, critic)."""

from __future__ import annotations

from pathlib import Path

from rftkit.config import JobSpec
from rftkit.data.chat import encode_prompt, reasoning_template_vars
from rftkit.data.validate import load_examples
from rftkit.graders.templates import item_fields
from rftkit.models.load import load_policy, resume_lora, wrap_lora
from rftkit.resolved import ResolvedReinforcement
from rftkit.train.critic import ValueModel
from rftkit.train.rl import frozen_copy, needs_reference_copy


def load_data(spec: JobSpec, tokenizer, grader_spec: dict, log):
    """(training, validation) prompts, checked against the grader's fields and the prompt length."""
    limit = spec.rftkit.lengths.max_prompt_tokens
    template_vars = reasoning_template_vars(spec.method.reinforcement.hyperparameters.reasoning_effort)
    checks = {"required_fields": item_fields(grader_spec), "max_prompt_tokens": limit,
              "count_prompt_tokens": lambda e: len(encode_prompt(tokenizer, e, **template_vars))}
    train = load_examples(spec.training_file, "reinforcement", **checks)
    valid = load_examples(spec.validation_file, "reinforcement", **checks) if spec.validation_file else []
    if spec.rftkit.eval.max_prompts is not None:
        valid = valid[: spec.rftkit.eval.max_prompts]
    log(f"data: {len(train)} training prompts and {len(valid)} validation prompts, all used")
    return train, valid


def memorising_warning(spec: JobSpec, resolved, rows: int) -> list[str]:
    """A warning when a few prompts are each seen many times: a policy can learn them by heart
    (train reward up, held-out reward down), and the user should know how to guard against it.

    >>> from rftkit.config import parse_job
    >>> spec = parse_job({"model": "m", "training_file": "t", "method": {"type": "reinforcement",
    ...     "reinforcement": {"grader": {"type": "string_check", "input": "a", "reference": "a", "operation": "eq"}}}})
    >>> from rftkit.resolved import resolve_reinforcement
    >>> memorising_warning(spec, resolve_reinforcement(spec, 12, parameters=None), 12)[0][:60]
    '12 training prompts, each sampled about 67 times over 100 st'
    >>> memorising_warning(spec, resolve_reinforcement(spec, 800, parameters=None), 800)
    []
    """
    passes = resolved.total_steps * resolved.batch_size / rows
    if rows >= 50 or passes <= 10:
        return []
    guard = ("the best held-out checkpoint is exported" if spec.rftkit.checkpoints.export == "best" else
             "set rftkit.checkpoints.export: best to keep the checkpoint with the best held-out reward")
    held_out = "Watch valid_reward_mean; " if spec.validation_file else "Add a validation_file to see it; "
    return [f"{rows} training prompts, each sampled about {passes:.0f} times over {resolved.total_steps} steps: a "
            f"policy can learn so few by heart (train reward rises while held-out reward falls). {held_out}{guard}, "
            "or train fewer steps (n_epochs, rftkit.max_steps) or closer to the base (rftkit.kl.coef)"]


def build_models(spec: JobSpec, resolved: ResolvedReinforcement, checkpoint: Path | None):
    """(policy, tokenizer, reference, critic). The critic is copied from the base before LoRA
    wraps the policy; the reference is the base, never a resumed policy."""
    opts = spec.rftkit
    base, tokenizer = load_policy(spec.model, opts.device, precision=opts.precision)
    critic = ValueModel.from_policy(base) if resolved.algorithm.uses_critic else None
    reference = frozen_copy(base) if needs_reference_copy(opts.kl, opts.lora.enabled) else None
    if opts.lora.enabled:
        if checkpoint is not None:
            policy = resume_lora(base, checkpoint / "model")
        else:
            policy = wrap_lora(base, opts.lora)
    elif checkpoint is not None:
        policy, _ = load_policy(str(checkpoint / "model"), opts.device, precision=opts.precision)
    else:
        policy = base
    if critic is not None:
        critic.to(next(policy.parameters()).device)
    return policy, tokenizer, reference, critic
