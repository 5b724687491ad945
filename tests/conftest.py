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


@pytest.fixture(scope="session")
def addition_files(tmp_path_factory) -> dict:
    from rftkit.data.builtin import write_addition

    return write_addition(tmp_path_factory.mktemp("addition"), digits=2, train=200, valid=50, sft=200, seed=0)
