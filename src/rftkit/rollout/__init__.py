"""② Rollout engines: turn prompts into sampled completions."""

from rftkit.rollout.hf import Completion, SamplingParams, decode, generate, stop_token_ids

__all__ = ["Completion", "SamplingParams", "decode", "generate", "stop_token_ids"]
