"""Inference for base and fine-tuned models, in a worker process.

`client.ServingClient` (no torch) starts `python -m rftkit.serving.worker` on first use and
talks to it in JSON lines; the worker keeps the most recently used models loaded and samples
with the same engine as training (`rollout.hf.generate`), so a model answers as it did
while it was being trained.
"""
