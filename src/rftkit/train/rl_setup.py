"""What a reinforcement run is built from: its prompts, and its models (policy, reference, critic)."""

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


def build_models(spec: JobSpec, resolved: ResolvedReinforcement, checkpoint: Path | None):
    """(policy, tokenizer, reference, critic). The critic is copied from the base before LoRA
    wraps the policy; the reference is the base, never a resumed policy."""
    opts = spec.rftkit
    base, tokenizer = load_policy(spec.model, opts.device)
    critic = ValueModel.from_policy(base) if resolved.algorithm.uses_critic else None
    reference = frozen_copy(base) if needs_reference_copy(opts.kl, opts.lora.enabled) else None
    if opts.lora.enabled:
        if checkpoint is not None:
            policy = resume_lora(base, checkpoint / "model")
        else:
            policy = wrap_lora(base, opts.lora)
    elif checkpoint is not None:
        policy, _ = load_policy(str(checkpoint / "model"), opts.device)
    else:
        policy = base
    if critic is not None:
        critic.to(next(policy.parameters()).device)
    return policy, tokenizer, reference, critic
