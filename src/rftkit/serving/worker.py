"""`python -m rftkit.serving.worker`: answer chat requests, one JSON line in, one out.

Replies go to the process's original stdout; anything libraries print is sent to stderr so
it cannot corrupt the protocol. The two most recently used models stay loaded.
"""

from __future__ import annotations

import json
import os
import sys
from collections import OrderedDict
from pathlib import Path

from rftkit.errors import RftkitError

MODELS_KEPT = 2


class Models:
    def __init__(self, kept: int = MODELS_KEPT):
        self.kept, self.loaded = kept, OrderedDict()

    def get(self, name: str):
        from rftkit.models.load import load_policy

        path = Path(name)
        key = (name, path.stat().st_mtime if path.exists() else 0.0)
        if key not in self.loaded:
            model, tokenizer = load_policy(name, "auto")
            model.eval()
            self.loaded[key] = (model, tokenizer)
            while len(self.loaded) > self.kept:
                self.loaded.popitem(last=False)
        self.loaded.move_to_end(key)
        return self.loaded[key]


def answer(models: Models, request: dict) -> dict:
    import torch

    from rftkit.data.chat import render_prompt
    from rftkit.rollout.hf import SamplingParams, decode, generate, stop_token_ids

    model, tokenizer = models.get(request["model_path"])
    text = render_prompt(tokenizer, request["messages"], request.get("tools"))
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    params = SamplingParams(int(request.get("max_tokens") or 64), float(request.get("temperature", 1.0)),
                            float(request.get("top_p", 1.0)))
    device = next(model.parameters()).device
    generator = None
    if request.get("seed") is not None:
        generator = torch.Generator(device=device).manual_seed(int(request["seed"]))
    n = int(request.get("n") or 1)
    completions = generate(model, [prompt] * n, params, pad_id=tokenizer.pad_token_id,
                           stop_ids=stop_token_ids(model, tokenizer), generator=generator)
    return {"choices": [{"text": decode(tokenizer, c), "finish_reason": c.finish_reason} for c in completions],
            "prompt_tokens": len(prompt), "completion_tokens": sum(len(c.token_ids) for c in completions)}


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries go to stderr
    sys.stdout = sys.stderr
    models = Models()
    for line in sys.stdin:
        try:
            reply = answer(models, json.loads(line))
        except RftkitError as err:
            reply = {"error": str(err), "user_error": True}
        except Exception as err:  # noqa: BLE001 — reported to the server, which answers 500
            reply = {"error": f"{type(err).__name__}: {err}"}
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
