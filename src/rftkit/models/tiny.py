"""rftkit's tiny model kit: a Llama-architecture model over the byte-level tokenizer.

No weights can be downloaded on a fresh machine, so rftkit builds its own models on the
spot: `tiny` (~1.1M parameters) and `small` (~6.0M). They are ordinary `LlamaForCausalLM`
checkpoints; `save_pretrained` directories load offline with `AutoModelForCausalLM` and
`AutoTokenizer`. Initialisation is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rftkit.errors import RftkitError
from rftkit.models.tokenizer import build_byte_tokenizer


@dataclass(frozen=True)
class TinySize:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    context: int


SIZES = {
    # ~1.1M parameters: learns short arithmetic in minutes on two CPU cores.
    "tiny": TinySize(hidden=128, layers=5, heads=4, intermediate=384, context=512),
    # ~6.0M parameters: the benchmark's M preset.
    "small": TinySize(hidden=256, layers=7, heads=8, intermediate=768, context=1024),
}


def build_tiny(size: str = "tiny", seed: int = 0):
    """A freshly initialised (model, tokenizer) pair; the same seed gives the same weights."""
    if size not in SIZES:
        raise RftkitError(f"unknown model size {size!r}", fix=f"use one of {', '.join(SIZES)}")
    shape = SIZES[size]
    tokenizer = build_byte_tokenizer(model_max_length=shape.context)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        max_position_embeddings=shape.context,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def parameter_count(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
