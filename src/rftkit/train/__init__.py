"""⑤⑥ Training: supervised fine-tuning, the RL step loop, optimizer, data order, checkpoints."""
