"""Evaluation: exact-match for supervised data; baseline pass@k and validation for RL."""
