"""① Data: read datasets (JSONL, parquet, saved HF datasets), validate them, render chats."""

from rftkit.data.chat import encode_completion, encode_prompt, render_prompt
from rftkit.data.validate import CheckedDataset, Problem, check_dataset, load_examples

__all__ = [
    "CheckedDataset",
    "Problem",
    "check_dataset",
    "encode_completion",
    "encode_prompt",
    "load_examples",
    "render_prompt",
]
