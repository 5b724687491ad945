"""The reward model: a causal LM's transformer body with one scalar head per criterion.

An answer is read as the policy reads it — the prompt through the chat template, then the
answer and its end-of-turn token — and each head reads the hidden state of that last token,
which has attended to the whole exchange. Rows are left-padded, so the last column is every
row's last token; position ids follow the attention mask, as in sampling.

Heads are named by what they learn: `preference` (which answer a reviewer picks), one per
rated criterion (`accuracy`, ...), and `safe` (not flagged unsafe). Raw head outputs are
logits; `calibration` (per head, fitted after training) maps them to [0, 1].

A saved reward model is a directory:

    body/                 the transformer body and tokenizer (save_pretrained)
    heads.safetensors     the heads' weights
    reward_model.json     format, heads (name, kind, calibration), max_length, base, metrics
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rftkit.data.chat import encode_completion, encode_prompt
from rftkit.models.reward_artifact import FORMAT, META_FILE, read_meta
from rftkit.models.calibration import apply_calibration
from rftkit.types import Example



@dataclass
class HeadInfo:
    name: str
    kind: str  # preference | rating | flag
    calibration: dict = field(default_factory=lambda: {"method": "none", "a": 1.0, "b": 0.0})


class RewardModel(nn.Module):
    def __init__(self, body: nn.Module, hidden_size: int, heads: list[HeadInfo], tokenizer, max_length: int = 512):
        super().__init__()
        self.body, self.tokenizer, self.max_length = body, tokenizer, max_length
        self.heads = list(heads)
        self.head = nn.Linear(hidden_size, len(heads))  # column k is head k's scalar
        nn.init.normal_(self.head.weight, std=hidden_size ** -0.5 * 0.1)
        nn.init.zeros_(self.head.bias)

    @property
    def head_names(self) -> list[str]:
        return [h.name for h in self.heads]

    def encode(self, prompt: list[dict], answer: str) -> list[int]:
        """Token ids of prompt + answer + end-of-turn, cut from the left to max_length."""
        ids = encode_prompt(self.tokenizer, Example(messages=prompt, item={})) + encode_completion(self.tokenizer, answer)
        return ids[-self.max_length:]

    def forward(self, ids: list[list[int]]) -> torch.Tensor:
        """[B, H] raw scores for B encoded answers."""
        device = self.head.weight.device
        width = max(len(row) for row in ids)
        pad = self.tokenizer.pad_token_id
        input_ids_BT = torch.full((len(ids), width), pad, dtype=torch.long)
        mask_BT = torch.zeros((len(ids), width), dtype=torch.long)
        for row, tokens in enumerate(ids):
            input_ids_BT[row, width - len(tokens):] = torch.tensor(tokens)
            mask_BT[row, width - len(tokens):] = 1
        positions_BT = (mask_BT.cumsum(-1) - 1).clamp(min=0)
        hidden_BTD = self.body(input_ids=input_ids_BT.to(device), attention_mask=mask_BT.to(device),
                               position_ids=positions_BT.to(device), use_cache=False).last_hidden_state
        return self.head(hidden_BTD[:, -1].float())  # [B, H]

    @torch.no_grad()
    def raw_scores(self, ids: list[list[int]], batch_size: int = 32) -> torch.Tensor:
        """[N, H] raw scores, `batch_size` answers per forward pass (longest first, less padding)."""
        was_training = self.training
        self.eval()
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = torch.zeros((len(ids), len(self.heads)))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            out[chunk] = self([ids[i] for i in chunk]).cpu()
        self.train(was_training)
        return out

    def calibrated(self, raw_NH: torch.Tensor) -> list[dict[str, float]]:
        """Per answer, each head's calibrated score in [0, 1]."""
        return [{h.name: apply_calibration(h.calibration, float(raw_NH[n, k])) for k, h in enumerate(self.heads)}
                for n in range(raw_NH.shape[0])]

    def score(self, prompts: list[list[dict]], answers: list[str], batch_size: int = 32) -> list[dict[str, float]]:
        """Calibrated scores per head for each (prompt, answer)."""
        ids = [self.encode(p, a) for p, a in zip(prompts, answers)]
        return self.calibrated(self.raw_scores(ids, batch_size))


def new_reward_model(base: str, heads: list[HeadInfo], *, device: str = "auto", max_length: int = 512) -> RewardModel:
    """A reward model on the body of a causal LM (a model directory or hub name)."""
    from rftkit.models.load import load_policy
    from rftkit.models.load import trunk_and_head

    # fp32 on every device, as `load_reward_model` reads it back: a bf16 body trained by plain AdamW would
    # round most of its updates away (docs/precision.md)
    policy, tokenizer = load_policy(base, device, precision="fp32")
    body, output = trunk_and_head(policy)
    model = RewardModel(body, output.weight.shape[1], heads, tokenizer, max_length)
    return model.to(next(body.parameters()).device)


def save_reward_model(model: RewardModel, out: Path, extra: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    model.body.save_pretrained(out / "body")
    model.tokenizer.save_pretrained(out / "body")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, out / "heads.safetensors")
    meta = {"format": FORMAT, "version": 1, "max_length": model.max_length,
            "heads": [asdict(h) for h in model.heads], **extra}
    (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return out


def load_reward_model(path: str | Path, device: str = "auto") -> RewardModel:
    """A saved reward model, ready to score (eval mode)."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    from rftkit.models.load import load_tokenizer, resolve_device, setup_cpu

    meta = read_meta(path)
    target = resolve_device(device)
    if target.type == "cpu":
        setup_cpu()
    body = AutoModel.from_pretrained(Path(path) / "body", dtype=torch.float32).to(target)
    tokenizer = load_tokenizer(str(Path(path) / "body"))
    heads = [HeadInfo(**h) for h in meta["heads"]]
    model = RewardModel(body, body.config.hidden_size, heads, tokenizer, meta["max_length"])
    model.head.load_state_dict(load_file(Path(path) / "heads.safetensors"))
    return model.to(target).eval()
