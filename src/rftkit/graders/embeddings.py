"""Sentence embeddings from a local Hugging Face model, for `text_similarity`'s cosine.

OpenAI's cosine embeds with text-embedding-3-large, a hosted model; rftkit uses whatever local
model directory is configured (`GraderContext.embedding_model` or $RFTKIT_EMBEDDING_MODEL),
e.g. a saved sentence-transformers checkpoint such as all-MiniLM-L6-v2. The embedding is the
attention-masked mean of the last hidden states (what sentence-transformers does for most
models), and cosine is taken between the two. Nothing is downloaded: no model, no cosine,
with an error saying how to configure one.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path

from rftkit.errors import RftkitError

ENV = "RFTKIT_EMBEDDING_MODEL"


def configured_model(explicit: str | None) -> str:
    path = explicit or os.environ.get(ENV)
    if not path:
        raise RftkitError(
            "text_similarity: cosine needs a local embedding model, and none is configured",
            fix=f"set ${ENV} (or the grader context's embedding_model) to a Hugging Face model directory",
        )
    if not Path(path).is_dir():
        raise RftkitError(f"text_similarity: the embedding model {path} is not a directory",
                          fix=f"point ${ENV} at a model saved with save_pretrained")
    return path


class Embedder:
    """A model and its tokenizer, loaded once; `cosine(a, b)` embeds both in one batch."""

    def __init__(self, path: str):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = AutoModel.from_pretrained(path).eval()
        self.lock = threading.Lock()  # one forward at a time: torch already uses every core

    def embed(self, texts: list[str]):
        torch = self.torch
        batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with self.lock, torch.no_grad():
            hidden_BTD = self.model(**batch).last_hidden_state
        mask_BT1 = batch["attention_mask"].unsqueeze(-1).to(hidden_BTD.dtype)
        return (hidden_BTD * mask_BT1).sum(1) / mask_BT1.sum(1).clamp(min=1.0)  # [B, D]

    def cosine(self, text: str, reference: str) -> float:
        pair_2D = self.embed([text, reference])
        return float(self.torch.nn.functional.cosine_similarity(pair_2D[0:1], pair_2D[1:2]).item())


@lru_cache(maxsize=2)
def embedder(path: str) -> Embedder:
    return Embedder(path)
