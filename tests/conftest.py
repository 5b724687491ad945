"""Shared fixtures: tiny models and datasets built once per session in a temp directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_flush_denormal(True)
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """An untrained tiny model saved with save_pretrained (seed 0)."""
    from rftkit.models.load import save_policy
    from rftkit.models.tiny import build_tiny

    out = tmp_path_factory.mktemp("tiny")
    model, tokenizer = build_tiny("tiny", seed=0)
    return save_policy(model, tokenizer, out)
